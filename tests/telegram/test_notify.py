"""Tell the asker (opt-in), Telegram: 有答案时通知我 under out-of-scope answers; after a reload that answers the
question, exactly one follow-up to the subscriber, nothing to anyone else, and the stored chat id is gone.
A real aiogram Bot and Dispatcher against the loopback fake Bot API, the real core and real SQLite files."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3

from bot.answering import texts
from bot.answering.follow_ups import follow_up_text
from knowledge.loader import PACKAGE_KNOWLEDGE_DIR, load_knowledge
from storage import subscriptions
from tests.support.bus_entry import BUS_ANSWER, BUS_QUESTION, publish_bus_entry
from tests.telegram.harness import button_data, buttons

ADMIN, ASKER, OTHER, THIEF, LATE = 1001, 2002, 3003, 4004, 5005
QUESTION = BUS_QUESTION
ANSWER = BUS_ANSWER


def _rows(path) -> list[tuple]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as c:
        return c.execute("SELECT channel, chat_id, question, traditional FROM subscriptions ORDER BY id").fetchall()


async def test_a_subscriber_gets_exactly_one_follow_up_and_nobody_else(tmp_path, tg):
    kdir = tmp_path / "knowledge"
    shutil.copytree(PACKAGE_KNOWLEDGE_DIR, kdir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    async with tg(kb=load_knowledge(kdir), knowledge_dir=kdir, admin_ids=[ADMIN]) as env:
        notify_db = subscriptions.path_for(env.db)
        await env.ask(QUESTION, user_id=ASKER)
        answer = env.sent(ASKER)[-1]
        assert answer.params["text"].startswith(texts.OUT_OF_SCOPE[:10])
        [data] = button_data(answer, "nt")
        assert (texts.NOTIFY_BUTTON, data) in buttons(answer)
        await env.ask(QUESTION, user_id=OTHER)  # the same question, no request
        assert not _rows(notify_db)  # nothing is stored before the button is pressed

        # someone else pressing (forging) the asker's button in their own chat: refused, nothing stored
        forged = await env.press(data, {**answer.result, "chat": env.fake.chat(THIEF)}, user_id=THIEF)
        assert forged.params["text"] == texts.STALE_BUTTON and not _rows(notify_db)

        ok = await env.press(data, answer.result, user_id=ASKER)
        assert ok.params["text"] == texts.NOTIFY_OK
        assert _rows(notify_db) == [("telegram", str(ASKER), QUESTION, 0)]
        assert (notify_db.stat().st_mode & 0o777) == 0o600
        edit = env.fake.calls_to("editMessageReplyMarkup")[-1]
        assert not [d for _, d in buttons(edit) if d.startswith("nt:")]  # the button is taken away
        again = await env.press(data, answer.result, user_id=ASKER)
        assert again.params["text"] == texts.NOTIFY_ALREADY and len(_rows(notify_db)) == 1

        # the chat id never reaches the log: private chats and users are pseudonyms there
        await env.flush()
        dump = "\n".join(
            str(r) for t in ("turns", "conversations", "reviews", "feedback") for r in env.query(f"SELECT * FROM {t}")
        )
        assert str(ASKER) not in dump

        # an expired request is purged, not answered
        subscriptions.subscribe(
            notify_db,
            channel="telegram",
            chat_id=str(LATE),
            turn_id="0" * 16,
            question=QUESTION,
            now=dt.datetime.now(dt.UTC) - dt.timedelta(days=31),
        )
        # a reload that does not answer the question: nothing is sent, the request waits
        await env.ask("/reload", user_id=ADMIN)
        assert env.sent(ASKER) == [answer] or all(
            not c.params["text"].startswith("您之前问过") for c in env.sent(ASKER)
        )
        assert len(_rows(notify_db)) == 1  # the asker's waits; the expired one is gone

        # the curators add an entry; after /reload the asker gets the answer once
        publish_bus_entry(kdir)
        before = {u: len(env.sent(u)) for u in (ASKER, OTHER, LATE)}
        await env.ask("/reload", user_id=ADMIN)
        follow = env.sent(ASKER)[before[ASKER] :]
        assert len(follow) == 1
        text = follow[0].params["text"]
        assert text.startswith(texts.NOTIFY_FOLLOW_UP.format(question=QUESTION)) and ANSWER in text
        assert text == follow_up_text(QUESTION, env.services.answerer.match(QUESTION).text)
        assert len(env.sent(OTHER)) == before[OTHER] and len(env.sent(LATE)) == before[LATE]
        assert _rows(notify_db) == []  # the chat id is gone

        await env.ask("/reload", user_id=ADMIN)  # again: nobody hears twice
        assert len(env.sent(ASKER)) == before[ASKER] + 1


async def test_no_button_in_groups_and_for_answers(tg):
    async with tg() as env:
        await env.ask("社保卡丢了怎么办", user_id=ASKER)  # answered: no button
        assert not button_data(env.sent(ASKER)[-1], "nt")
        await env.ask("你好", user_id=ASKER)  # a greeting: no button
        assert not button_data(env.sent(ASKER)[-1], "nt")
        await env.ask(f"@faq_test_bot {QUESTION}", chat_type="supergroup", user_id=ASKER)
        group_answer = env.sent(env.fake.group_id)[-1]
        assert group_answer.params["text"].startswith(texts.OUT_OF_SCOPE[:10])
        assert not button_data(group_answer, "nt")


async def test_none_of_these_offers_the_button(tg):
    async with tg() as env:
        await env.ask("电子社保卡", user_id=ASKER)  # clarify
        offer = env.sent(ASKER)[-1]
        [none] = button_data(offer, "no")
        await env.press(none, offer.result, user_id=ASKER)
        ack = env.sent(ASKER)[-1]
        assert ack.params["text"] == texts.NONE_OF_THESE_ACK
        [data] = button_data(ack, "nt")
        assert (await env.press(data, ack.result, user_id=ASKER)).params["text"] == texts.NOTIFY_OK
        assert _rows(subscriptions.path_for(env.db)) == [("telegram", str(ASKER), "电子社保卡", 0)]
