"""The Telegram adapter with the real LLM fallback (bot.llm.fallback) talking to the loopback FakeOpenAI."""

from __future__ import annotations

import pytest

from bot.answering import texts
from bot.llm.fallback import LLMFallback
from tests.fakes.openai_server import FakeOpenAI, reply
from tests.telegram.harness import button_data, knowledge, make_settings

Q_NONE = "我想在手机上弄个社保卡，去哪儿搞"  # routed "none" by the matcher; retrieval finds "apply"
GOOD_BODY = "可以在河北人社APP、微信或支付宝申领电子社保卡，登录后按提示输入本人身份信息并人脸识别即可。"
GOOD = GOOD_BODY + "[来源: apply]"
BAD = "申领电子社保卡需要先缴纳工本费，可以拨打客服热线0311-86001234预约，审核通过后再下载掌上社保APP。[来源: apply]"
GROUP = -1001234567890


@pytest.fixture
async def openai_fake():
    async with FakeOpenAI() as server:
        yield server


def _llm(tmp_path, server: FakeOpenAI) -> LLMFallback:
    settings = make_settings(
        tmp_path,
        openai_base_url=server.base_url + "/v1",
        openai_model="test-model",
        llm_mode="generate",
        llm_timeout=2.0,
        llm_budget=5.0,
    )
    llm = LLMFallback(settings, knowledge())
    llm.client.backoff_base = 0.01
    return llm


async def test_private_llm_answer_drafts_then_the_verified_answer(tmp_path, openai_fake, tg):
    openai_fake.script(reply(GOOD, chunks=12, chunk_delay=0.03))
    llm = _llm(tmp_path, openai_fake)
    async with tg(llm=llm, openai_base_url=openai_fake.base_url + "/v1") as env:
        await env.ask(Q_NONE)
        drafts = [c.params["text"] for c in env.fake.calls_to("sendMessageDraft")]
        assert drafts and all("来源" not in d for d in drafts)
        [final] = env.sent(1001)
        assert final.params["text"] == f"{GOOD_BODY}\n{texts.SOURCE_NOTE}"
        assert button_data(final, "fb")
        await env.flush()
        assert env.query("SELECT route, guard, llm_raw FROM turns") == [("llm", "pass", GOOD)]
    await llm.aclose()


async def test_group_llm_guard_failure_replaces_the_preview_with_the_fallback(tmp_path, openai_fake, tg):
    openai_fake.script(reply(BAD, chunks=12, chunk_delay=0.03))
    llm = _llm(tmp_path, openai_fake)
    async with tg(llm=llm, openai_base_url=openai_fake.base_url + "/v1") as env:
        await env.ask(f"@faq_test_bot {Q_NONE}", chat_type="supergroup", user_id=2002)
        [placeholder] = env.sent(GROUP)
        assert texts.TG_GENERATING.strip() in placeholder.params["text"]  # the unverified preview
        final = env.fake.calls_to("editMessageText")[-1]
        assert final.params["message_id"] == placeholder.result["message_id"]
        assert final.params["text"].startswith(texts.LLM_FALLBACK)
        assert "工本费" not in final.params["text"] and "0311" not in final.params["text"]
        stored = env.fake.messages[(GROUP, placeholder.result["message_id"])]
        assert stored["text"] == final.params["text"]  # what the chat shows now
        await env.flush()
        [(route, guard)] = env.query("SELECT route, guard FROM turns")
        assert route == "llm" and guard.startswith("fail")
    await llm.aclose()
