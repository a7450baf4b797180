"""Groups and supergroups: answer only when addressed, reply in the asker's forum topic, optional auto-answer."""

from __future__ import annotations

from bot.answering import texts
from tests.telegram.harness import CLARIFY_Q, FAQ_Q, NONE_Q, ScriptedFallback, button_data, knowledge

GROUP = -1001234567890
ASKER, OTHER = 2002, 3003
BOT = "@faq_test_bot"


def _lost_question() -> str:
    return knowledge().get("lost_reissue").question


async def test_unaddressed_messages_are_ignored_and_not_logged(tg):
    async with tg() as env:
        await env.ask(FAQ_Q, chat_type="supergroup", user_id=ASKER)
        await env.ask("大家好", chat_type="supergroup", user_id=ASKER)
        await env.feed(env.fake.sticker_update(chat_type="supergroup", user_id=ASKER))
        await env.ask("/faq@other_bot", chat_type="supergroup", user_id=ASKER)
        await env.ask("/stats", chat_type="supergroup", user_id=ASKER)  # not ours in a group: ignored
        await env.ask(f"{BOT}2 {FAQ_Q}", chat_type="supergroup", user_id=ASKER)  # another bot's name
        assert env.sent() == []
        await env.flush()
        assert env.query("SELECT count(*) FROM turns") == [(0,)]


async def test_mention_is_stripped_and_the_answer_replies_to_the_asker(tg):
    async with tg() as env:
        for text in (f"{BOT} {FAQ_Q}", f"{FAQ_Q} {BOT}", f"{BOT.upper()}，{FAQ_Q}", f"{BOT}{FAQ_Q}"):
            asked = await env.ask(text, chat_type="supergroup", user_id=ASKER)
            answer = env.sent(GROUP)[-1]
            assert answer.params["text"].startswith(_lost_question()), text
            assert answer.params["reply_parameters"]["message_id"] == asked["message_id"]
        await env.flush()
        questions = [r[0] for r in env.query("SELECT question FROM turns")]
        assert questions and all(BOT not in q.lower() for q in questions)
        [(chat_type, chat_id)] = set(env.query("SELECT chat_type, chat_id FROM conversations"))
        assert chat_type == "supergroup" and chat_id == str(GROUP)  # group ids are not personal data


async def test_reply_to_the_bot_and_commands_address_it(tg):
    async with tg() as env:
        await env.ask(f"{BOT} {NONE_Q}", chat_type="group", chat_id=-4001, user_id=ASKER)
        bot_msg = env.sent(-4001)[-1].result
        await env.ask(FAQ_Q, chat_type="group", chat_id=-4001, user_id=ASKER, reply_to=bot_msg["message_id"])
        assert env.sent(-4001)[-1].params["text"].startswith(_lost_question())

        await env.ask("/faq@faq_test_bot", chat_type="group", chat_id=-4001, user_id=ASKER)
        faq = env.sent(-4001)[-1]
        assert faq.params["text"] == texts.TG_FAQ_HEAD and len(button_data(faq, "tp")) == len(knowledge().entries)
        await env.ask("/help", chat_type="group", chat_id=-4001, user_id=ASKER)
        assert env.sent(-4001)[-1].params["text"] == texts.HELP

        # a reply to someone else's message is not addressed to the bot
        human = await env.ask("有人知道吗", chat_type="group", chat_id=-4001, user_id=OTHER)
        before = len(env.sent(-4001))
        await env.ask(FAQ_Q, chat_type="group", chat_id=-4001, user_id=ASKER, reply_to=human["message_id"])
        assert len(env.sent(-4001)) == before


async def test_forum_topic_is_kept(tg):
    async with tg() as env:
        asked = await env.ask(f"{BOT} {CLARIFY_Q}", chat_type="supergroup", user_id=ASKER, thread_id=77)
        clarify = env.sent(GROUP)[-1]
        assert clarify.params["message_thread_id"] == 77
        assert clarify.params["reply_parameters"]["message_id"] == asked["message_id"]

        # the asker picks a choice: the answer goes to the same topic, replying to the question
        await env.press(button_data(clarify, "ch")[0], clarify.result, user_id=ASKER)
        chosen = env.sent(GROUP)[-1]
        assert chosen.params["message_thread_id"] == 77
        assert chosen.params["reply_parameters"]["message_id"] == asked["message_id"]

        # a message in the topic (whose reply_to_message is the topic root, made by a human) is not addressed
        root = {
            "message_id": 77,
            "date": 0,
            "chat": env.fake.chat(GROUP),
            "from": env.fake.user(OTHER),
            "forum_topic_created": {"name": "问答", "icon_color": 7322096},
        }
        before = len(env.sent(GROUP))
        await env.ask(FAQ_Q, chat_type="supergroup", user_id=ASKER, thread_id=77, reply_to=root)
        assert len(env.sent(GROUP)) == before


async def test_answer_buttons_belong_to_the_asker(tg):
    async with tg() as env:
        await env.ask(f"{BOT} {CLARIFY_Q}", chat_type="supergroup", user_id=ASKER)
        clarify = env.sent(GROUP)[-1]
        for data in (button_data(clarify, "fb")[0], button_data(clarify, "ch")[0], button_data(clarify, "no")[0]):
            toast = await env.press(data, clarify.result, user_id=OTHER)
            assert toast.params["text"] == texts.TG_NOT_YOURS
        assert len(env.sent(GROUP)) == 1
        # topic buttons are for everyone
        await env.ask("/faq", chat_type="supergroup", user_id=ASKER)
        faq = env.sent(GROUP)[-1]
        await env.press("tp:newborn", faq.result, user_id=OTHER)
        assert env.sent(GROUP)[-1].params["text"].startswith(knowledge().get("newborn").question)
        await env.flush()
        assert env.query("SELECT count(*) FROM feedback") == [(0,)]


async def test_edited_group_message_addressed_to_the_bot(tg):
    async with tg() as env:
        asked = await env.ask(f"{BOT} 社保", chat_type="supergroup", user_id=ASKER)
        n = len(env.sent(GROUP))
        await env.feed(
            env.fake.edited_message_update(
                f"{BOT} {FAQ_Q}", message_id=asked["message_id"], chat_type="supergroup", user_id=ASKER
            )
        )
        assert len(env.sent(GROUP)) == n + 1
        assert env.sent(GROUP)[-1].params["reply_parameters"]["message_id"] == asked["message_id"]
        # an edit that is not addressed is ignored
        other = await env.ask("随便聊聊", chat_type="supergroup", user_id=ASKER)
        await env.feed(
            env.fake.edited_message_update(FAQ_Q, message_id=other["message_id"], chat_type="supergroup", user_id=ASKER)
        )
        assert len(env.sent(GROUP)) == n + 1


async def test_auto_answer_only_on_a_confident_match(tg):
    async with tg(group_auto_answer=True) as env:
        asked = await env.ask(FAQ_Q, chat_type="supergroup", user_id=ASKER, thread_id=5)
        [answer] = env.sent(GROUP)
        assert answer.params["text"].startswith(_lost_question())
        assert answer.params["reply_parameters"]["message_id"] == asked["message_id"]
        assert answer.params["message_thread_id"] == 5
        for chatter in (NONE_Q, CLARIFY_Q, "哈哈", "/start@other_bot"):
            await env.ask(chatter, chat_type="supergroup", user_id=ASKER)
        assert len(env.sent(GROUP)) == 1
        await env.flush()
        assert env.query("SELECT route FROM turns") == [("faq",)]  # un-addressed non-answers are not logged


async def test_auto_answer_off_by_default(tg):
    async with tg() as env:
        assert env.settings.group_auto_answer is False
        await env.ask(FAQ_Q, chat_type="supergroup", user_id=ASKER)
        assert env.sent() == []


async def test_llm_in_a_group_edits_a_placeholder_at_most_every_interval(tg):
    drafts = [("电子社保卡" + "可以办理" * i) for i in range(1, 21)]  # 20 drafts, 0.05 s apart -> ~1 s
    llm = ScriptedFallback(drafts, "电子社保卡可以在服务网点办理。", delay=0.05)
    async with tg(llm=llm) as env:
        asked = await env.ask(f"{BOT} {NONE_Q}", chat_type="supergroup", user_id=ASKER, thread_id=9)
        [placeholder] = env.sent(GROUP)
        assert (
            placeholder.params["text"].startswith(drafts[0])
            and texts.TG_GENERATING.strip() in placeholder.params["text"]
        )
        assert placeholder.params["reply_parameters"]["message_id"] == asked["message_id"]
        assert placeholder.params["message_thread_id"] == 9
        edits = env.fake.calls_to("editMessageText")
        assert not any(c.failed for c in edits)
        previews, final = edits[:-1], edits[-1]
        # throttled: far fewer edits than drafts, at least edit_interval apart
        assert 1 <= len(previews) <= 5
        times = [placeholder.ts] + [c.ts for c in previews]
        assert all(b - a >= env.options.edit_interval - 0.02 for a, b in zip(times, times[1:], strict=False))
        assert len({c.params["text"] for c in previews}) == len(previews)  # only when the text changed
        # the verified answer replaces the preview, with the buttons
        assert final.params["text"] == "电子社保卡可以在服务网点办理。"
        assert final.params["message_id"] == placeholder.result["message_id"]
        assert button_data(final, "fb")
        assert not env.fake.calls_to("sendMessageDraft")  # drafts are for private chats only


async def test_non_text_in_group_only_when_addressed(tg):
    async with tg() as env:
        await env.ask(f"{BOT} {FAQ_Q}", chat_type="supergroup", user_id=ASKER)
        bot_msg = env.sent(GROUP)[-1].result
        update = env.fake.sticker_update(chat_type="supergroup", user_id=ASKER)
        await env.feed(update)
        assert len(env.sent(GROUP)) == 1
        update = env.fake.sticker_update(chat_type="supergroup", user_id=ASKER)
        update["message"]["reply_to_message"] = bot_msg
        await env.feed(update)
        assert env.sent(GROUP)[-1].params["text"] == texts.NON_TEXT
