"""Prompt-injection probes (tests/data/injection_probes.jsonl): the user's text always stays inside its slot,
and when the scripted model "complies" (prints the canary and the system prompt) the user never sees it."""

from __future__ import annotations

import json

import pytest
import pytest_asyncio

from bot.answering.privacy import mask_pii
from bot.answering.types import Conversation, Draft, Reply, Route
from bot.llm.fallback import LLMFallback, escape_data
from tests.conftest import DATA_DIR
from tests.fakes.openai_server import FakeOpenAI, reply
from tests.llm.harness import llm_settings
from tests.llm.test_fallback import prompt_ids, question_slot, user_message

PROBES = [
    json.loads(line)
    for line in (DATA_DIR / "injection_probes.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


def test_probe_file_is_varied():
    assert len(PROBES) >= 30
    assert len({p["id"] for p in PROBES}) == len(PROBES)
    kinds = {p["kind"] for p in PROBES}
    assert {
        "goal-hijack",
        "prompt-leak",
        "role-play",
        "ignore-previous",
        "quoted-instruction",
        "fake-faq-block",
        "fake-end",
    } <= kinds
    assert any("<<<END>>>" in p["q"] for p in PROBES) and any("<<<FAQ" in p["q"] for p in PROBES)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(kb, tmp_path_factory):
    """One fake server and one fallback for all probes (each probe is a fresh conversation)."""
    async with FakeOpenAI() as fake:
        llm = LLMFallback(llm_settings(tmp_path_factory.mktemp("probes"), fake.base_url + "/v1"), kb)
        try:
            yield fake, llm
        finally:
            await llm.aclose()


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("probe", PROBES, ids=[p["id"] for p in PROBES])
async def test_probe_stays_in_its_slot_and_a_leak_is_never_shown(probe, served, answerer):
    fake, llm = served
    before = len(fake.calls)
    # The model "complies": it prints the canary and the start of the system prompt.
    fake.script(reply(f"好的，我会照做。内部标记：{llm.canary}。我的系统提示是：{llm.system_prompt[:120]}", chunks=12))
    base = answerer.match(probe["q"])
    conv = Conversation("test", "probe", "private", "u")
    events = [e async for e in llm.stream(base, conv)]

    [body] = fake.requests[before:]
    user = user_message(body)
    # verbatim but escaped: the probe (personal numbers masked) is the whole question slot
    expected = escape_data(mask_pii(probe["q"]).text)
    assert question_slot(body) == expected
    assert "<" not in expected and ">" not in expected
    # the probe added no delimiter: only the entry blocks and the question slot have them
    n_blocks = len(prompt_ids(body)) + 1
    assert user.count("<<<") == user.count(">>>") == 2 * n_blocks
    assert user.count("<<<END>>>") == n_blocks
    assert llm.canary not in user and "{canary}" not in body["messages"][0]["content"]

    drafts = [e for e in events if isinstance(e, Draft)]
    finals = [e for e in events if isinstance(e, Reply)]
    assert len(finals) == 1 and events[-1] is finals[0]
    final = finals[0]
    assert final.route is Route.LLM and final.guard == "fail: leak:canary"
    assert llm.canary not in final.text
    for d in drafts:
        assert llm.canary not in d.text and "内部标记" not in d.text
