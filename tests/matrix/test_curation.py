"""Matrix side of the curator loop against a real Synapse: an admin (MATRIX_ADMIN_IDS) curates the gap inbox with
commands in a direct room, a person replies 通知我 to an out-of-scope answer and gets exactly one follow-up after
the admin's !reload; a non-admin's !gaps is an ordinary question."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

pytest.importorskip("mautrix")

from bot.answering import texts  # noqa: E402
from knowledge.loader import PACKAGE_KNOWLEDGE_DIR  # noqa: E402
from storage import subscriptions  # noqa: E402
from tests.matrix.bot_runner import BotRunner  # noqa: E402
from tests.matrix.client import TestUser, from_bot  # noqa: E402
from tests.support.bus_entry import BUS_ANSWER, BUS_QUESTION, publish_bus_entry  # noqa: E402

QUESTION = BUS_QUESTION
ANSWER = BUS_ANSWER


async def dm(user: TestUser, bot_id: str) -> str:
    room = await user.create_room([bot_id], direct=True)
    await user.wait_member(room, bot_id)
    await user.wait_for(from_bot(bot_id, room))  # the welcome
    return room


def reply_to(event_id: str) -> dict:
    return {"m.relates_to": {"m.in_reply_to": {"event_id": event_id}}}


async def test_admin_commands_and_tell_the_asker(synapse, matrix_settings, alice, bob, bot_user, tmp_path):
    kdir = tmp_path / "knowledge"
    shutil.copytree(PACKAGE_KNOWLEDGE_DIR, kdir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    settings = matrix_settings.model_copy(update={"matrix_admin_ids": [bob.user_id], "knowledge_dir": kdir})
    notify_db = subscriptions.path_for(settings.db)
    bot_id = bot_user.user_id
    async with BotRunner(settings), TestUser(synapse.base_url, alice) as a, TestUser(synapse.base_url, bob) as b:
        room_a = await dm(a, bot_id)
        q = await a.send(room_a, QUESTION)
        answer = await a.wait_for(from_bot(bot_id, room_a, reply_to=q))
        assert answer["content"]["body"].startswith(texts.OUT_OF_SCOPE[:10])
        hint = await a.wait_for(from_bot(bot_id, room_a, reply_to=answer["event_id"]))
        assert hint["content"]["body"] == texts.MATRIX_NOTIFY_HINT and hint["content"]["msgtype"] == "m.notice"
        assert not notify_db.exists() or subscriptions.count(notify_db) == 0

        ask = await a.send(
            room_a,
            f"> <{bot_id}> {texts.MATRIX_NOTIFY_HINT}\n\n{texts.MATRIX_NOTIFY_WORD}",
            **reply_to(hint["event_id"]),
        )
        ok = await a.wait_for(from_bot(bot_id, room_a, reply_to=ask))
        assert ok["content"]["body"] == texts.NOTIFY_OK
        with sqlite3.connect(notify_db) as c:
            assert c.execute("SELECT channel, chat_id, question FROM subscriptions").fetchall() == [
                ("matrix", room_a, QUESTION)
            ]
        # a non-admin's !gaps is an ordinary question
        x = await a.send(room_a, "!gaps")
        plain = await a.wait_for(from_bot(bot_id, room_a, reply_to=x))
        assert texts.ADMIN_GAPS_HEAD not in plain["content"]["body"]

        room_b = await dm(b, bot_id)

        async def admin(cmd: str) -> str:
            sent = await b.send(room_b, cmd)
            return (await b.wait_for(from_bot(bot_id, room_b, reply_to=sent)))["content"]["body"]

        assert await admin("!gap 1") == texts.MATRIX_CURATE_PICK  # no listing yet
        listing = await admin("!gaps")
        assert listing.startswith(texts.ADMIN_GAPS_HEAD) and listing.endswith(texts.MATRIX_CURATE_HELP)
        # alice's "!gaps" was an ordinary, unanswered question: a gap of its own
        [n] = [line.split(".")[0] for line in listing.splitlines() if line.endswith(f". {QUESTION} ×1")]
        view = await admin(f"!gap {n}")
        assert view.startswith(texts.CURATE_CLUSTER_HEAD.format(count=1)) and f"• {QUESTION} ×1" in view
        assert await admin(f"!mark {n} entry no_such_entry") == texts.MATRIX_CURATE_HELP
        assert await admin(f"!mark {n} new") == texts.CURATE_MARKED_NEW.format(n=1)
        with sqlite3.connect(settings.db) as c:
            assert c.execute("SELECT label, reviewer FROM reviews").fetchall() == [
                ("new-entry", f"matrix:{bob.user_id}")
            ]
        done = await admin(f"!answer {n} {ANSWER}")
        [draft] = list((kdir / "drafts").glob("*.toml"))
        assert done == texts.CURATE_DRAFT_OK.format(draft_id=draft.stem, path=f"drafts/{draft.name}")
        assert ANSWER in draft.read_text(encoding="utf-8")

        # the entry is published (as `faqbot knowledge approve` would); the admin reloads
        publish_bus_entry(kdir)
        assert (await admin("!reload")).startswith(texts.ADMIN_RELOAD_OK.split("：")[0])
        follow = await a.wait_for(
            lambda e: (
                e.get("sender") == bot_id
                and e.get("room_id") == room_a
                and e["content"].get("body", "").startswith("您之前问过")
            )
        )
        assert follow["content"]["body"].startswith(texts.NOTIFY_FOLLOW_UP.format(question=QUESTION))
        assert ANSWER in follow["content"]["body"]
        assert subscriptions.count(notify_db) == 0  # the room id is gone
        await admin("!reload")  # again: nobody hears twice
        again = [e for e in a.events if e is not follow and e.get("sender") == bot_id]

        def another_follow_up(e):
            return (
                e.get("sender") == bot_id
                and "您之前问过" in e.get("content", {}).get("body", "")
                and e.get("event_id") != follow["event_id"]
            )

        await a.quiet(another_follow_up, 1.0)
        await b.quiet(another_follow_up, 0.2)
        assert again == [e for e in a.events if e is not follow and e.get("sender") == bot_id]
