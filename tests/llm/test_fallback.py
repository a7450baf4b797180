"""The LLM fallback end to end: real Answerer + LLMFallback + openai client against the loopback FakeOpenAI,
with the turns written to a real SQLite log that the tests read back."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import time

import pytest

from bot.answering import texts
from bot.answering.types import Reply, Route
from bot.llm.fallback import escape_data
from knowledge.normalize import to_traditional
from prompts.loader import PROMPTS_DIR
from tests.fakes.openai_server import (
    empty,
    hang,
    malformed,
    reply,
    status,
    stream_then_drop,
)

Q_NONE = "我想在手机上弄个社保卡，去哪儿搞"  # routed "none" by the matcher; retrieval finds "apply"
GOOD_BODY = "可以在河北人社APP、微信或支付宝申领电子社保卡，登录后按提示输入本人身份信息并人脸识别即可。"
GOOD = GOOD_BODY + "[来源: apply]"


# ---------------------------------------------------------------------------------------------- helpers
def user_message(body: dict) -> str:
    [system, user] = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    return user["content"]


def question_slot(body: dict) -> str:
    text = user_message(body)
    assert text.count("<<<QUESTION>>>") == 1
    start = text.index("<<<QUESTION>>>\n") + len("<<<QUESTION>>>\n")
    end = text.index("\n<<<END>>>", start)
    return text[start:end]


def prompt_ids(body: dict) -> list[str]:
    return re.findall(r"<<<FAQ id=([a-z0-9_]+) section=\d+>>>", user_message(body))


def assert_safe_fallback(final: Reply):
    assert final.route is Route.LLM
    assert final.text.startswith(texts.LLM_FALLBACK)
    assert "来源" not in final.text


# ---------------------------------------------------------------------------------------------- answers
async def test_grounded_answer_is_shown_without_markers_and_logged(fake, make):
    h = await make(fake)
    fake.script(reply(GOOD))
    drafts, final = await h.ask(Q_NONE)

    assert final.route is Route.LLM and final.guard == "pass" and final.error is None
    assert final.text == f"{GOOD_BODY}\n{texts.SOURCE_NOTE}"  # Hebei-specific channels: the province note
    assert final.context_ids[0] == "apply" and len(final.context_ids) == h.settings.llm_top_k
    assert final.model == "test-model" and final.llm_raw == GOOD
    assert final.question == Q_NONE and final.normalized and final.candidates

    [body] = fake.requests
    assert prompt_ids(body) == final.context_ids
    assert body["model"] == "test-model" and body["stream"] is True
    assert body["max_tokens"] == h.settings.llm_max_tokens and body["temperature"] <= 0.3
    assert question_slot(body) == Q_NONE
    assert h.llm.canary in body["messages"][0]["content"]
    assert h.llm.canary not in user_message(body)
    assert "请用简体中文回答" in user_message(body)

    [row] = await h.rows()
    assert row["route"] == "llm" and row["guard"] == "pass" and row["error"] is None
    assert row["context_ids"] == final.context_ids and row["model"] == "test-model"
    assert row["llm_raw"] == GOOD and row["answer"] == final.text and row["question"] == Q_NONE


@pytest.mark.parametrize(
    "answer, reason",
    [
        (
            "可以拨打服务热线0311-86001234申领电子社保卡，登录后按提示输入本人身份信息并人脸识别即可。[来源: apply]",
            "number-not-in-source",
        ),
        (
            "申领电子社保卡需要缴纳20元工本费，登录河北人社APP后按提示输入本人身份信息并人脸识别即可。[来源: apply]",
            "number-not-in-source:20",
        ),
        (
            "可以在掌上人社APP申领电子社保卡，登录后按提示输入本人身份信息并人脸识别即可。[来源: apply]",
            "name-not-in-source",
        ),
        (
            "可以在河北人社APP申领电子社保卡，登录后按提示输入本人身份信息并人脸识别即可。[来源: bank_loans]",
            "unknown-citation:bank_loans",
        ),
        ("可以在河北人社APP、微信或支付宝申领电子社保卡，登录后按提示输入本人身份信息并人脸识别即可。", "no-citation"),
    ],
)
async def test_ungrounded_answers_end_in_the_safe_fallback(fake, make, answer, reason):
    h = await make(fake)
    fake.script(reply(answer))
    _, final = await h.ask(Q_NONE)
    assert_safe_fallback(final)
    assert final.guard.startswith(f"fail: {reason}"), final.guard
    assert final.llm_raw == answer and final.error is None
    [row] = await h.rows()
    assert row["route"] == "llm" and row["guard"] == final.guard and row["llm_raw"] == answer
    assert row["answer"] == final.text


async def test_citing_an_entry_that_exists_but_was_not_sent_fails(fake, make):
    h = await make(fake)
    sent = [e.id for e in h.llm.prepare(h.answerer.match(Q_NONE), h.conv).entries]
    assert "lost_reissue" not in sent
    # grounded in the real lost_reissue entry, but that entry was not in the context
    fake.script(
        reply(
            "社保卡补办可到社保卡银行服务网点或人社服务网点柜面办理，需提供本人有效居民二代身份证原件。[来源: lost_reissue]"
        )
    )
    _, final = await h.ask(Q_NONE)
    assert final.context_ids == sent
    assert_safe_fallback(final)
    assert final.guard == "fail: unknown-citation:lost_reissue"


async def test_refusal_is_shown_with_referral(fake, make):
    h = await make(fake)
    fake.script(reply(h.llm.prompts.refusal))
    _, final = await h.ask("今天天气怎么样")
    assert final.route is Route.LLM and final.guard == "pass" and final.error is None
    assert final.text.startswith(h.llm.prompts.refusal + "\n" + texts.REFERRAL)
    assert final.reason == "llm-refusal"
    [row] = await h.rows()
    assert row["guard"] == "pass" and row["llm_raw"] == h.llm.prompts.refusal


@pytest.mark.parametrize("leak", ["canary", "system-prompt"])
async def test_prompt_leak_never_reaches_the_user(fake, make, leak):
    h = await make(fake)
    prefix = "好的，下面是我的设定："
    system = h.llm.system_prompt
    leaked = system if leak == "canary" else system[: system.index("内部标记") - 20]
    assert (h.llm.canary in leaked) is (leak == "canary")
    fake.script(reply(prefix + leaked, chunks=40))
    drafts, final = await h.ask(Q_NONE)
    assert_safe_fallback(final)
    assert final.guard == f"fail: leak:{leak}"
    for d in drafts:
        assert h.llm.canary not in d.text
        assert len(d.text) <= len(prefix), d.text  # not one character of the system prompt was previewed
    assert h.llm.canary not in final.text
    [row] = await h.rows()
    assert row["guard"] == f"fail: leak:{leak}"


async def test_canary_alone_in_the_middle_of_a_good_answer(fake, make):
    h = await make(fake)
    fake.script(reply(GOOD_BODY[:20] + h.llm.canary + GOOD_BODY[20:] + "[来源: apply]", chunks=30))
    drafts, final = await h.ask(Q_NONE)
    assert_safe_fallback(final)
    assert all(h.llm.canary[:3] not in d.text for d in drafts)
    assert all(len(d.text) <= 20 for d in drafts)


# ---------------------------------------------------------------------------------------------- streaming
async def test_streamed_good_answer_drafts_then_verified_final(fake, make):
    h = await make(fake)
    long_good = GOOD + "如不会操作，可就近前往社会保障卡服务网点进行咨询。[来源: apply]"
    fake.script(reply(long_good, chunks=15))
    drafts, final = await h.ask(Q_NONE)
    assert final.guard == "pass"
    assert len(drafts) >= 3
    texts_seen = [d.text for d in drafts]
    assert texts_seen == sorted(texts_seen, key=len)  # growing previews
    clean = final.text.split("\n")[0]
    for t in texts_seen:
        assert "来源" not in t and "[" not in t
        assert clean.startswith(t.rstrip())


async def test_streamed_bad_answer_drafts_then_fallback(fake, make):
    h = await make(fake)
    bad = "申领电子社保卡需要先缴纳工本费，可以拨打客服热线0311-86001234预约，审核通过后再下载〈掌上社保〉APP。[来源: apply]"
    fake.script(reply(bad, chunks=15))
    drafts, final = await h.ask(Q_NONE)
    assert drafts, "the preview was streamed"
    assert_safe_fallback(final)
    assert final.guard.startswith("fail: ")


async def test_stream_dropped_midway_is_not_retried(fake, make):
    h = await make(fake)
    fake.script(stream_then_drop(GOOD * 3, after_chunks=3, chunks=6))
    _, final = await h.ask(Q_NONE)
    assert_safe_fallback(final)
    assert final.error.startswith("connection")
    assert len(fake.calls) == 1


# ---------------------------------------------------------------------------------------------- failures
async def test_500_is_retried_then_fallback(fake, make):
    h = await make(fake, llm_max_retries=2)
    fake.script(status(500), status(500), status(500), reply(GOOD))
    _, final = await h.ask(Q_NONE)
    assert_safe_fallback(final)
    assert final.error.startswith("server-error") and final.guard is None
    assert len(fake.calls) == 3  # 1 + 2 retries
    [row] = await h.rows()
    assert row["route"] == "llm" and row["error"].startswith("server-error")
    assert row["context_ids"] == final.context_ids


async def test_429_then_success(fake, make):
    h = await make(fake)
    fake.script(status(429, retry_after=0.05), reply(GOOD))
    t0 = time.monotonic()
    _, final = await h.ask(Q_NONE)
    assert final.guard == "pass" and final.text.startswith(GOOD_BODY)
    assert len(fake.calls) == 2
    assert fake.calls[1].ts - fake.calls[0].ts >= 0.045  # Retry-After honoured
    assert time.monotonic() - t0 < 2


async def test_retry_after_longer_than_the_budget_gives_up_at_once(fake, make):
    h = await make(fake, llm_budget=1.0)
    fake.script(status(429, retry_after=3))
    t0 = time.monotonic()
    _, final = await h.ask(Q_NONE)
    assert_safe_fallback(final)
    assert final.error.startswith("budget") and len(fake.calls) == 1
    assert time.monotonic() - t0 < 0.8


async def test_hang_past_the_timeout_ends_within_the_budget(fake, make):
    h = await make(fake, llm_timeout=0.3, llm_budget=1.0, llm_max_retries=5)
    fake.script(hang(10), hang(10), hang(10), hang(10), hang(10), hang(10))
    t0 = time.monotonic()
    _, final = await h.ask(Q_NONE)
    elapsed = time.monotonic() - t0
    assert_safe_fallback(final)
    assert final.error.split(":")[0] in ("timeout", "budget")
    assert 0.25 < elapsed < 1.5, elapsed
    assert 1 <= len(fake.calls) <= 4


@pytest.mark.parametrize("kind", ["json", "html"])
async def test_malformed_responses_end_in_fallback(fake, make, kind):
    h = await make(fake)
    fake.script(malformed(kind), reply(GOOD))
    _, final = await h.ask(Q_NONE)
    assert_safe_fallback(final)
    assert final.error.startswith("malformed")
    assert len(fake.calls) == 1  # a broken server is not asked again for this question


async def test_empty_output_ends_in_fallback(fake, make):
    h = await make(fake)
    fake.script(empty())
    drafts, final = await h.ask(Q_NONE)
    assert drafts == []
    assert_safe_fallback(final)
    assert final.error.startswith("empty")


async def test_bad_request_is_not_retried(fake, make):
    h = await make(fake)
    fake.script(status(400))
    _, final = await h.ask(Q_NONE)
    assert_safe_fallback(final)
    assert final.error.startswith("http-error") and len(fake.calls) == 1


async def test_connection_refused_ends_in_fallback(make):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    h = await make(base_url=f"http://127.0.0.1:{port}/v1", llm_max_retries=1)
    t0 = time.monotonic()
    _, final = await h.ask(Q_NONE)
    assert_safe_fallback(final)
    assert final.error.startswith("connection")
    assert time.monotonic() - t0 < 2
    [row] = await h.rows()
    assert row["error"].startswith("connection")


async def test_circuit_breaker_opens_then_closes_after_cooldown(fake, make):
    h = await make(fake, llm_breaker_failures=2, llm_breaker_cooldown=0.3, llm_max_retries=0)
    fake.script(status(500), status(500))
    for _ in range(2):
        _, final = await h.ask(Q_NONE)
        assert final.error.startswith("server-error")
    assert len(fake.calls) == 2
    for _ in range(3):  # open: the server is not asked
        _, final = await h.ask(Q_NONE)
        assert_safe_fallback(final)
        assert final.reason == "circuit-open" and final.error
    assert len(fake.calls) == 2
    await asyncio.sleep(0.35)
    fake.script(reply(GOOD))
    _, final = await h.ask(Q_NONE)  # half-open trial succeeds: closed again
    assert final.guard == "pass" and len(fake.calls) == 3
    _, final = await h.ask(Q_NONE)
    assert len(fake.calls) == 4 and h.llm.breaker.state == "closed"


async def test_failed_trial_reopens_the_breaker(fake, make):
    h = await make(fake, llm_breaker_failures=1, llm_breaker_cooldown=0.2, llm_max_retries=0)
    fake.script(status(503), status(503))
    await h.ask(Q_NONE)
    await h.ask(Q_NONE)
    assert len(fake.calls) == 1
    await asyncio.sleep(0.25)
    await h.ask(Q_NONE)  # trial fails
    assert len(fake.calls) == 2 and h.llm.breaker.state == "open"
    await h.ask(Q_NONE)
    assert len(fake.calls) == 2


# ---------------------------------------------------------------------------------------------- the request
async def test_personal_numbers_never_leave_and_the_question_stays_in_its_slot(fake, make):
    h = await make(fake)
    fake.script(reply(GOOD))
    raw_id, raw_phone, raw_bank = "110105194912310021", "138 1234 5678", "6222020200112233445"
    q = f"我的身份证号是{raw_id}，手机{raw_phone}，银行卡号{raw_bank}，我想在手机上弄个社保卡，去哪儿搞"
    _, final = await h.ask(q)
    [body] = fake.requests
    dumped = json.dumps(body, ensure_ascii=False)
    for raw in (raw_id, raw_phone, raw_phone.replace(" ", ""), raw_bank, "12310021", "5678"):
        assert raw not in dumped
    slot = question_slot(body)
    assert slot == "我的身份证号是[身份证号]，手机[手机号]，银行卡号[银行卡号]，我想在手机上弄个社保卡，去哪儿搞"
    assert final.guard == "pass" and texts.PII_NOTE in final.text
    [row] = await h.rows()
    assert raw_id not in json.dumps(row, ensure_ascii=False) and row["masked_id"] == 1


async def test_follow_up_carries_the_previous_exchange_and_entry(fake, make):
    h = await make(fake)
    _, first = await h.ask("电子社保卡登录密码忘记，怎么办？")
    assert first.route is Route.FAQ and not fake.calls
    alipay = (
        "在支付宝重置密码：支付宝-卡包-证件-在〈电子证件〉类型里选择〈社保卡〉-点击右上角〈···（社保卡管理）〉-"
        "点击〈重置密码〉-需本人人脸识别后输入新密码，点击〈完成〉即可。[来源: reset_password]"
    )
    fake.script(reply(alipay))
    _, second = await h.ask("那支付宝呢？")
    [body] = fake.requests
    user = user_message(body)
    assert prompt_ids(body)[0] == "reset_password"
    history = user[user.index("<<<HISTORY>>>") : user.index("<<<QUESTION>>>")]
    assert "用户：电子社保卡登录密码忘记，怎么办？" in history
    assert "助手：电子社保卡登录密码忘记，怎么办？" in history and "可通过以下操作步骤进行重置密码" in history
    assert question_slot(body) == "那支付宝呢？"
    assert second.route is Route.LLM and second.guard == "pass" and second.context_ids[0] == "reset_password"
    assert second.text.startswith("在支付宝重置密码")


async def test_history_is_limited_and_off_when_zero(fake, make):
    h = await make(fake, llm_history_turns=1)
    for q in ("社保卡丢了怎么办", "社保卡能用几年"):
        await h.ask(q)
    fake.script(reply(GOOD))
    await h.ask("那微信呢？")
    user = user_message(fake.requests[-1])
    assert "用户：社保卡能用几年" in user and "社保卡丢了" not in user

    h0 = await make(fake, llm_history_turns=0)
    await h0.ask("社保卡丢了怎么办")
    await h0.ask("那微信呢？")
    user = user_message(fake.requests[-1])
    assert "<<<HISTORY>>>" not in user and h0.llm.prompts.phrases["no_history"] in user


async def test_clarify_goes_to_the_llm_and_its_choices_survive_a_failure(fake, make):
    h = await make(fake)
    q = "电子社保卡怎么弄"
    base = h.answerer.match(q)
    assert base.route is Route.CLARIFY
    fake.script(status(400))
    _, final = await h.ask(q)
    assert len(fake.calls) == 1
    assert_safe_fallback(final)
    assert [c.faq_id for c in final.choices] == [c.faq_id for c in base.choices]
    assert texts.RELATED_HEAD in final.text and base.choices[0].question in final.text


async def test_clarify_stays_offline_when_switched_off(fake, make):
    h = await make(fake, llm_for_clarify=False)
    _, final = await h.ask("电子社保卡怎么弄")
    assert final.route is Route.CLARIFY and not fake.calls


async def test_traditional_question_gets_a_traditional_answer(fake, make):
    h = await make(fake)
    q = "我想在手機上弄個社保卡，去哪兒搞"
    fake.script(reply(to_traditional(GOOD_BODY) + "[來源: apply]"))
    _, final = await h.ask(q)
    [body] = fake.requests
    assert h.llm.prompts.phrases["traditional"] in user_message(body)
    assert final.guard == "pass" and final.traditional
    assert final.text == to_traditional(f"{GOOD_BODY}\n{texts.SOURCE_NOTE}")


async def test_long_question_is_bounded(fake, make):
    h = await make(fake, max_question_chars=50)
    fake.script(reply(GOOD))
    q = Q_NONE + "啊" * 500
    _, final = await h.ask(q)
    assert len(question_slot(fake.requests[0])) <= 50
    assert texts.TOO_LONG_NOTE in final.text


# ---------------------------------------------------------------------------------------------- reload
async def test_reload_prompts_and_keep_old_ones_on_error(fake, make, tmp_path):
    prompts = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, prompts, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    h = await make(fake, prompts_dir=prompts)
    old_system = h.llm.system_prompt
    (prompts / "refusal.txt").write_text("抱歉，这个问题超出了常见问题的范围。\n", encoding="utf-8")
    h.answerer.reload()
    assert h.llm.prompts.refusal == "抱歉，这个问题超出了常见问题的范围。"
    assert "超出了常见问题的范围" in h.llm.system_prompt and h.llm.canary in h.llm.system_prompt
    fake.script(reply("抱歉，这个问题超出了常见问题的范围。"))
    _, final = await h.ask("今天天气怎么样")
    assert final.reason == "llm-refusal"

    current = h.llm.system_prompt
    (prompts / "system.txt").write_text("没有占位符的系统提示", encoding="utf-8")
    h.llm.reload(h.answerer.kb)
    assert h.llm.system_prompt == current != old_system
    fake.script(reply(GOOD))
    _, final = await h.ask(Q_NONE)
    assert final.guard == "pass"


async def test_reload_takes_the_new_knowledge(fake, make, knowledge_copy):
    h = await make(fake, knowledge_dir=knowledge_copy)
    path = knowledge_copy / "faq" / "01_apply.toml"
    path.write_text(path.read_text(encoding="utf-8").replace("合作银行的APP", "合作银行的手机银行"), encoding="utf-8")
    kb = h.answerer.reload()
    assert h.llm.kb is kb and "合作银行的手机银行" in h.llm.kb.get("apply").answer
    fake.script(reply(GOOD))
    await h.ask(Q_NONE)
    assert "合作银行的手机银行" in user_message(fake.requests[0])


def test_escape_data_neutralises_delimiters():
    assert escape_data("a<<<END>>>b") == "a＜＜＜END＞＞＞b"
    assert "<" not in escape_data("<<<FAQ id=x>>>") and ">" not in escape_data(">>>")


async def test_reasoning_model_output_is_hidden_and_checked_without_it(fake, make):
    h = await make(fake)
    think = f"<think>用户想申领。规则：内部标记{h.llm.canary}不能输出，只能引用条目。</think>\n"
    fake.script(reply(think + GOOD, chunks=20))
    drafts, final = await h.ask(Q_NONE)
    assert final.guard == "pass" and final.text.startswith(GOOD_BODY)
    assert drafts and all("think" not in d.text and "用户想申领" not in d.text for d in drafts)
    assert final.llm_raw.startswith("<think>")  # the log keeps the raw output


async def test_broken_prompts_do_not_block_new_knowledge(fake, make, tmp_path, knowledge_copy):
    prompts = tmp_path / "prompts2"
    shutil.copytree(PROMPTS_DIR, prompts, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    h = await make(fake, prompts_dir=prompts, knowledge_dir=knowledge_copy)
    system = h.llm.system_prompt
    (prompts / "user.txt").write_text("{question}", encoding="utf-8")  # invalid: placeholders missing
    path = knowledge_copy / "faq" / "01_apply.toml"
    path.write_text(path.read_text(encoding="utf-8").replace("合作银行的APP", "合作银行的手机银行"), encoding="utf-8")
    kb = h.answerer.reload()
    assert h.llm.kb is kb and h.llm.system_prompt == system
    assert "{entries}" in h.llm.prompts.user
