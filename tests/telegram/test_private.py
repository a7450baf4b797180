"""Private chats through the real Dispatcher (`feed_raw_update`) and a real Bot talking to the fake Bot API."""

from __future__ import annotations

import asyncio

from bot.answering import texts
from bot.answering.privacy import pseudonymize
from bot.telegram.options import TelegramOptions
from bot.telegram.render import utf16_len
from tests.telegram.harness import (
    CLARIFY_Q,
    FAQ_Q,
    NONE_Q,
    SECRET,
    TEST_OPTIONS,
    ScriptedFallback,
    button_data,
    buttons,
    knowledge,
)

USER = 1001


async def test_faq_question_gets_curated_answer_bold_title_feedback_buttons_and_a_logged_turn(tg):
    async with tg() as env:
        await env.ask(FAQ_Q)
        [call] = env.sent(USER)
        e = knowledge().get("lost_reissue")
        assert call.params["text"] == f"{e.question}\n\n{e.answer}"
        assert call.params["entities"] == [{"type": "bold", "offset": 0, "length": utf16_len(e.question)}]
        assert "parse_mode" not in call.params and "reply_parameters" not in call.params  # private: no quote
        [up, down] = button_data(call, "fb")
        assert up.endswith(":up") and down.endswith(":down")
        turn_id = up.split(":")[1]

        await env.flush()
        [(tid, route, faq_id, via, channel, answer)] = env.query(
            "SELECT id, route, faq_id, via, channel, answer FROM turns"
        )
        assert (tid, route, faq_id, via, channel) == (turn_id, "faq", "lost_reissue", "text", "telegram")
        assert answer == call.params["text"]
        # the raw Telegram id is never stored: the private chat and the user are pseudonymized
        [(chat_id, chat_type, user_hash)] = env.query("SELECT chat_id, chat_type, user_hash FROM conversations")
        assert chat_type == "private" and str(USER) not in (chat_id or "") and user_hash == pseudonymize(USER, SECRET)


async def test_none_route_without_llm_says_out_of_scope(tg):
    async with tg() as env:
        await env.ask(NONE_Q)
        [call] = env.sent(USER)
        assert call.params["text"].startswith(texts.OUT_OF_SCOPE)
        assert button_data(call, "fb")  # still rateable
        await env.flush()
        assert env.query("SELECT route FROM turns") == [("none",)]


async def test_clarify_choices_as_buttons_then_choice_and_none_of_these(tg):
    async with tg() as env:
        await env.ask(CLARIFY_Q)
        [clarify] = env.sent(USER)
        assert clarify.params["text"].startswith(texts.CLARIFY_HEAD)
        choices = button_data(clarify, "ch")
        assert len(choices) >= 2
        assert (texts.NONE_OF_THESE, button_data(clarify, "no")[0]) in buttons(clarify)
        clarify_turn = choices[0].split(":")[1]
        chosen_id = choices[0].split(":")[2]

        answer = await env.press(choices[0], clarify.result)
        assert "text" not in answer.params  # no toast, the answer comes as a message
        [_, chosen] = env.sent(USER)
        entry = knowledge().get(chosen_id)
        assert chosen.params["text"] == f"{entry.question}\n\n{entry.answer}"
        assert button_data(chosen, "fb")

        await env.press(button_data(clarify, "no")[0], clarify.result)
        assert env.sent(USER)[-1].params["text"] == texts.NONE_OF_THESE_ACK

        await env.flush()
        turns = env.query("SELECT id, route, via, faq_id FROM turns ORDER BY ts, id")
        assert [(r[1], r[2]) for r in turns] == [("clarify", "text"), ("faq", "choice")]
        assert turns[1][3] == chosen_id
        assert env.query("SELECT turn_id, kind FROM feedback") == [(clarify_turn, "none")]


async def test_numbered_reply_to_clarify_works_too(tg):
    async with tg() as env:
        await env.ask(CLARIFY_Q)
        first_choice = button_data(env.sent(USER)[0], "ch")[0].split(":")[2]
        await env.ask("1")
        entry = knowledge().get(first_choice)
        assert env.sent(USER)[-1].params["text"].startswith(entry.question)


async def test_start_help_faq_and_topic_buttons(tg):
    async with tg() as env:
        await env.ask("/start")
        [start] = env.sent(USER)
        assert start.params["text"] == texts.WELCOME
        topics = button_data(start, "tp")
        assert len(topics) == len(knowledge().entries)

        await env.ask("/help")
        assert env.sent(USER)[-1].params["text"] == texts.HELP

        await env.ask("/faq")
        faq = env.sent(USER)[-1]
        assert faq.params["text"] == texts.TG_FAQ_HEAD

        assert [t for t, _ in buttons(faq)] == [e.question for e in knowledge().entries]

        await env.press("tp:change_phone", faq.result)
        e = knowledge().get("change_phone")
        answer = env.sent(USER)[-1]
        assert answer.params["text"] == f"{e.question}\n\n{e.answer}" and button_data(answer, "fb")
        await env.flush()
        assert env.query("SELECT route, via, faq_id FROM turns") == [("faq", "button", "change_phone")]

        await env.ask("/weather")  # an unknown command is answered like any question: out of scope
        assert env.sent(USER)[-1].params["text"].startswith(texts.OUT_OF_SCOPE)


async def test_feedback_buttons_store_feedback_and_disappear(tg):
    async with tg() as env:
        await env.ask(FAQ_Q)
        await env.ask(NONE_Q)
        [faq_answer, none_answer] = env.sent(USER)
        up = button_data(faq_answer, "fb")[0]
        down = button_data(none_answer, "fb")[1]

        toast = await env.press(up, faq_answer.result)
        assert toast.params["text"] == texts.FEEDBACK_THANKS_UP
        toast = await env.press(down, none_answer.result)
        assert toast.params["text"] == texts.FEEDBACK_THANKS_DOWN
        # the 👍/👎 row is removed after a vote
        edits = env.fake.calls_to("editMessageReplyMarkup")
        assert [c.params["message_id"] for c in edits] == [
            faq_answer.result["message_id"],
            none_answer.result["message_id"],
        ]
        assert all(not c.failed for c in edits)

        await env.flush()
        rows = env.query("SELECT t.route, f.kind FROM feedback f JOIN turns t ON t.id = f.turn_id ORDER BY f.id")
        assert rows == [("faq", "up"), ("none", "down")]


async def test_forged_or_stale_callback_data_gets_a_polite_answer(tg):
    options = TelegramOptions(**{**TEST_OPTIONS.__dict__, "throttle_rate": 100})
    async with tg(options=options) as env:
        await env.ask(FAQ_Q)
        [msg] = env.sent(USER)
        for data in [
            "fb:not-a-turn:up",
            "fb:0123456789abcdef:maybe",
            "zz:1",
            "tp:../../etc/passwd",
            "ch:0123456789abcdef:no_such_entry",
            "tp:no_such_entry",
            "",
            "x" * 64,
        ]:
            toast = await env.press(data, msg.result)
            assert toast.params.get("text") == texts.STALE_BUTTON, data
            assert not toast.failed
        assert len(env.sent(USER)) == 1  # nothing was posted
        await env.flush()
        assert env.query("SELECT count(*) FROM feedback") == [(0,)]


async def test_non_text_messages_get_a_hint(tg):
    async with tg() as env:
        for update in (env.fake.sticker_update(), env.fake.photo_update(caption="看图"), env.fake.voice_update()):
            await env.feed(update)
        assert [c.params["text"] for c in env.sent(USER)] == [texts.NON_TEXT] * 3
        await env.flush()
        assert env.query("SELECT count(*) FROM turns") == [(0,)]


async def test_edited_message_is_answered_as_a_new_question(tg):
    async with tg() as env:
        original = await env.ask("今天天")
        await env.feed(env.fake.edited_message_update(FAQ_Q, message_id=original["message_id"]))
        [first, second] = env.sent(USER)
        assert second.params["text"].startswith(knowledge().get("lost_reissue").question)
        assert second.params["reply_parameters"]["message_id"] == original["message_id"]
        await env.flush()
        assert [r[0] for r in env.query("SELECT route FROM turns ORDER BY ts, id")] == ["none", "faq"]


async def test_llm_answer_streams_drafts_then_sends_the_verified_text(tg):
    llm = ScriptedFallback(
        ["电子社保卡", "电子社保卡可以在", "电子社保卡可以在掌上12333申领"],
        "电子社保卡可以在掌上12333申领。",
        delay=0.08,
    )
    options = TelegramOptions(**{**TEST_OPTIONS.__dict__, "typing_delay": 0.0})
    async with tg(llm=llm, options=options) as env:
        await env.ask(NONE_Q)
        drafts = env.fake.calls_to("sendMessageDraft")
        assert [c.params["text"] for c in drafts] == llm.drafts
        assert len({c.params["draft_id"] for c in drafts}) == 1 and drafts[0].params["draft_id"] != 0
        assert env.fake.calls_to("sendChatAction")[0].params["action"] == "typing"
        [final] = env.sent(USER)
        assert final.params["text"] == "电子社保卡可以在掌上12333申领。"
        assert final.ts > drafts[-1].ts
        assert button_data(final, "fb")
        assert not env.fake.calls_to("editMessageText")  # private chats use drafts, not edits
        await env.flush()
        assert env.query("SELECT route, guard, model FROM turns") == [("llm", "pass", "fake-model")]


async def test_guard_failure_shows_only_the_fallback(tg):
    llm = ScriptedFallback(["未经核实的说法"], texts.LLM_FALLBACK, guard="fail: unsupported claim")
    async with tg(llm=llm) as env:
        await env.ask(NONE_Q)
        [final] = env.sent(USER)
        assert final.params["text"] == texts.LLM_FALLBACK
        assert "未经核实" not in final.params["text"]


async def test_drafts_refused_fall_back_to_an_edited_placeholder(tg):
    llm = ScriptedFallback(["第一段", "第一段第二段"], "第一段第二段。", delay=0.05)
    async with tg(llm=llm) as env:
        env.fake.fail("sendMessageDraft", status=400, description="Bad Request: method not available")
        await env.ask(NONE_Q)
        [placeholder] = env.sent(USER)  # the placeholder became the final answer by an edit
        assert placeholder.params["text"].startswith("第一段")
        final_edit = env.fake.calls_to("editMessageText")[-1]
        assert final_edit.params["text"] == "第一段第二段。" and button_data(final_edit, "fb")


async def test_a_9000_character_answer_is_split_with_buttons_on_the_last_part(tg):
    long = "".join(
        f"第{i}条：电子社保卡可以在河北人社APP、微信、支付宝申领，如不会操作可以前往服务网点咨询。" for i in range(200)
    )
    assert len(long) > 9000
    llm = ScriptedFallback([], long, delay=0.0)
    async with tg(llm=llm) as env:
        await env.ask(NONE_Q)
        parts = env.sent(USER)
        assert len(parts) == 3
        assert all(utf16_len(p.params["text"]) <= 4096 for p in parts)
        assert "".join(p.params["text"] for p in parts) == long
        assert [bool(buttons(p)) for p in parts] == [False, False, True]


async def test_a_very_long_message_is_answered_from_its_beginning(tg):
    async with tg() as env:
        await env.ask(FAQ_Q + "。" + "我再补充一些情况" * 500)  # 4000+ characters, the most Telegram allows
        [answer] = env.sent(USER)  # the core cuts the question and says so
        assert texts.TOO_LONG_NOTE in answer.params["text"]
        assert "tp:lost_reissue" in button_data(answer, "tp") or answer.params["text"].startswith(
            knowledge().get("lost_reissue").question
        )
        await env.flush()
        [(question,)] = env.query("SELECT question FROM turns")
        assert len(question) == env.settings.max_question_chars


async def test_follow_up_questions_share_one_conversation_per_user(tg):
    async with tg() as env:
        await env.ask(FAQ_Q)
        await env.ask(FAQ_Q, user_id=2002)
        await env.ask("谢谢")
        store = env.tg["conversations"]
        assert len(store) == 2
        conv = store.get(USER, "private", USER)
        assert [x.faq_id for x in conv.history] == ["lost_reissue", None]
        await env.flush()
        assert env.query("SELECT count(DISTINCT conversation_id) FROM turns") == [(2,)]


async def test_concurrent_users_are_answered_independently(tg):
    async with tg() as env:
        users = range(3001, 3011)
        await asyncio.gather(*(env.ask(FAQ_Q, user_id=u) for u in users))
        assert sorted(c.params["chat_id"] for c in env.sent()) == list(users)
