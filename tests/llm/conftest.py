"""Fixtures of the LLM tests: a loopback OpenAI-compatible server, and a factory of answering cores on it."""

from __future__ import annotations

import pytest

from bot.answering.answerer import Answerer
from bot.llm.fallback import LLMFallback
from knowledge.loader import load_knowledge
from storage.writer import TurnLog
from tests.fakes.openai_server import FakeOpenAI
from tests.llm.harness import Harness, llm_settings


@pytest.fixture
async def fake():
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def make(tmp_path, kb):
    made: list[Harness] = []

    async def factory(server: FakeOpenAI | None = None, *, base_url: str | None = None, **overrides) -> Harness:
        url = base_url or (server.base_url + "/v1" if server else None)
        s = llm_settings(tmp_path, url, **overrides)
        knowledge = load_knowledge(s.knowledge_dir) if "knowledge_dir" in overrides else kb
        llm = LLMFallback(s, knowledge)
        llm.client.backoff_base = 0.01  # keep retries fast in tests
        log = TurnLog(s.db, secret=b"llm-test-secret", flush_interval=0.005)
        await log.start()
        h = Harness(Answerer(s, knowledge, llm=llm, turn_sink=log), llm, log, s)
        made.append(h)
        return h

    yield factory
    for h in made:
        await h.llm.aclose()
        await h.log.close()
