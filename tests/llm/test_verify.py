"""The optional verifier pass of generate mode (FAQBOT_LLM_VERIFY): a second, short model call lists unsupported
claims; any listed claim, an unusable verdict or a failed call withholds the answer. Real openai client, loopback
FakeOpenAI."""

from __future__ import annotations

import pytest

from bot.llm.fallback import verifier_problem
from tests.fakes.openai_server import FakeOpenAI, json_reply, reply, status
from tests.llm.test_fallback import GOOD, GOOD_BODY, Q_NONE, assert_safe_fallback

BAD = "申领电子社保卡需要先缴纳工本费，可以拨打客服热线0311-86001234预约。[来源: apply]"


@pytest.fixture
async def fake():
    async with FakeOpenAI() as server:
        yield server


async def test_supported_answer_is_shown_after_the_second_call(fake, make):
    h = await make(fake, llm_verify=True)
    fake.script(reply(GOOD), json_reply({"unsupported": []}))
    _, final = await h.ask(Q_NONE)
    assert final.guard == "pass" and final.text.startswith(GOOD_BODY)
    first, second = fake.requests
    assert first["stream"] is True and second["stream"] is False
    assert first["max_tokens"] == 400 and second["max_tokens"] == 200  # the verifier's call is short
    fmt = second["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "unsupported_claims"
    user = second["messages"][1]["content"]
    assert GOOD_BODY in user and "<<<FAQ id=apply" in user and "来源" not in user.split("<<<ANSWER>>>")[1]
    assert "<<<FAQ id=intro" not in user  # only the cited entries are sent to the verifier


@pytest.mark.parametrize(
    "verdict, label",
    [
        (json_reply({"unsupported": ["补办是免费的"]}), "fail: verifier:补办是免费的"),
        (reply("都有依据。"), "fail: verifier:unparseable"),
        (json_reply({"unsupported": [1]}), "fail: verifier:unparseable"),
        (status(500), "fail: verifier:error:server-error"),
    ],
)
async def test_any_doubt_withholds_the_answer(fake, make, verdict, label):
    h = await make(fake, llm_verify=True, llm_max_retries=0)
    fake.script(reply(GOOD), verdict)
    _, final = await h.ask(Q_NONE)
    assert_safe_fallback(final)
    assert final.guard == label and final.reason == "guard-fail"
    [row] = await h.rows()
    assert row["guard"] == label


async def test_no_second_call_when_the_guard_already_refused(fake, make):
    h = await make(fake, llm_verify=True)
    fake.script(reply(BAD))
    _, final = await h.ask(Q_NONE)
    assert_safe_fallback(final)
    assert len(fake.calls) == 1 and final.guard.startswith("fail") and "verifier" not in final.guard


async def test_verifier_off_by_default(fake, make):
    h = await make(fake)
    fake.script(reply(GOOD))
    _, final = await h.ask(Q_NONE)
    assert final.guard == "pass" and len(fake.calls) == 1


def test_verifier_output_parser():
    assert verifier_problem('{"unsupported": []}') == ""
    assert verifier_problem('<think>检查…</think>```json\n{"unsupported": []}\n```') == ""
    assert verifier_problem('{"unsupported": ["24天"]}') == "24天"
    assert verifier_problem('{"claims": []}') == "unparseable"
    assert verifier_problem("") == "unparseable"
