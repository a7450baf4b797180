"""Encrypted rooms on a real Synapse (loopback): the bot against a second, encrypting mautrix client.

The test user's client is a real mautrix client with crypto (OlmMachine, libolm through python-olm): it encrypts
what it sends and decrypts what the bot sends, so every assertion is on what a person's client shows."""
from __future__ import annotations

import asyncio
import os

import pytest

pytest.importorskip("olm")

from bot import texts  # noqa: E402
from bot.matrix.e2ee import crypto_store_path  # noqa: E402
from bot.matrix.session import load_session, session_path  # noqa: E402
from bot.replies import Conversation, Reply, Route  # noqa: E402
from tests.matrix.client import from_bot  # noqa: E402
from tests.matrix.fixtures import (  # noqa: E402,F401
    BotRunner,
    TestUser,
    alice,
    bob,
    bot_user,
    db_rows,
    matrix_settings,
    synapse,
)


def expected(answerer, question: str) -> Reply:
    return answerer.match(question, Conversation("matrix", "!x:y", "direct", "@u:y"))


def decrypted_from_bot(bot_id: str, room_id: str, *, reply_to: str | None = None):
    """A message from the bot that arrived encrypted and was decrypted by the test client."""
    plain = from_bot(bot_id, room_id, reply_to=reply_to)
    return lambda e: bool(e.get("encrypted")) and plain(e)


async def test_encrypted_direct_room_answer_is_encrypted_and_decryptable(
        synapse, matrix_settings, alice, bot_user, answerer, tmp_path):
    want = expected(answerer, "社保卡丢了怎么办")
    assert want.route is Route.FAQ
    async with BotRunner(matrix_settings) as runner, \
            TestUser(synapse.base_url, alice, crypto_dir=tmp_path / "alice") as a:
        assert runner.bot.e2ee is not None  # on by default: the crypto dependency is installed
        room = await a.create_room([bot_user.user_id], direct=True, encrypted=True)
        await a.wait_member(room, bot_user.user_id)
        welcome = await a.wait_for(decrypted_from_bot(bot_user.user_id, room))
        assert welcome["content"]["body"] == texts.MATRIX_WELCOME
        assert welcome["content"]["msgtype"] == "m.notice"  # unsolicited

        q = await a.send(room, "社保卡丢了怎么办")
        ans = await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=q))
        c = ans["content"]
        assert c["body"] == want.text and c["msgtype"] == "m.text"
        assert c["m.mentions"] == {"user_ids": [alice.user_id]}
        # Nothing the bot sent in the room went out in plaintext; the user could read all of it.
        mine = [e for e in a.events if e.get("sender") == bot_user.user_id and e.get("room_id") == room
                and e.get("type") != "m.room.member"]
        assert mine and all(e.get("encrypted") for e in mine), a.summary()
        assert not a.undecryptable
        await runner.flush()

    rows = db_rows(matrix_settings, "SELECT t.question, t.route, c.chat_type FROM turns t "
                                    "JOIN conversations c ON c.id = t.conversation_id")
    assert [tuple(r) for r in rows] == [("社保卡丢了怎么办", "faq", "direct")]
    # The crypto store and the session file: private to the owner; the device id is kept.
    store = crypto_store_path(matrix_settings)
    assert store.exists() and (store.stat().st_mode & 0o777) == 0o600
    for extra in (store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")):
        assert not extra.exists() or (extra.stat().st_mode & 0o777) == 0o600
    session = load_session(session_path(matrix_settings))
    assert session.device_id == bot_user.device_id and session.access_token == ""  # the env token is not copied
    assert (session_path(matrix_settings).stat().st_mode & 0o777) == 0o600
