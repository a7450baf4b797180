"""The LLM fallback's test harness: settings for a test, and an answering core with the real fallback and log."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.answering.answerer import Answerer
from bot.answering.types import Conversation, Draft, Reply
from bot.app.settings import Settings
from bot.llm.fallback import LLMFallback
from storage.db import open_db_sync
from storage.queries import list_turns
from storage.writer import TurnLog
from tests.conftest import KNOWLEDGE_DIR


def llm_settings(tmp_path, base_url: str | None, **overrides) -> Settings:
    values = dict(
        db=tmp_path / "faqbot.db",
        knowledge_dir=KNOWLEDGE_DIR,
        openai_base_url=base_url,
        openai_api_key=None,
        openai_model="test-model",
        llm_mode="generate",
        llm_timeout=2.0,
        llm_budget=5.0,
        llm_max_retries=2,
        llm_breaker_failures=5,
        llm_breaker_cooldown=60.0,
        telegram_bot_token=None,
        matrix_homeserver=None,
        transports=[],
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class Harness:
    answerer: Answerer
    llm: LLMFallback
    log: TurnLog
    settings: Settings
    conv: Conversation = field(default_factory=lambda: Conversation("test", "chat-1", "private", "user-1"))

    async def ask(self, question: str, conv: Conversation | None = None) -> tuple[list[Draft], Reply]:
        drafts: list[Draft] = []
        final: Reply | None = None
        async for event in self.answerer.stream(question, conv or self.conv):
            if isinstance(event, Draft):
                drafts.append(event)
            else:
                assert final is None, "more than one final Reply"
                final = event
        assert final is not None
        return drafts, final

    async def rows(self) -> list[dict]:
        await self.log.flush()
        conn = open_db_sync(self.settings.db)
        try:
            return list(reversed(list_turns(conn, limit=100)))  # oldest first
        finally:
            conn.close()
