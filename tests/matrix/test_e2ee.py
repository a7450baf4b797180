"""Encrypted rooms on a real Synapse (loopback): the bot against a second, encrypting mautrix client.

The test user's client is a real mautrix client with crypto (OlmMachine, libolm through python-olm): it encrypts
what it sends and decrypts what the bot sends, so every assertion is on what a person's client shows."""

from __future__ import annotations

import asyncio
import os

import pytest

pytest.importorskip("olm")

from bot.answering import texts  # noqa: E402
from bot.answering.types import Conversation, Reply, Route  # noqa: E402
from bot.matrix.e2ee import crypto_store_path  # noqa: E402
from bot.matrix.session import load_session, session_path  # noqa: E402
from tests.matrix.bot_runner import BotRunner, db_rows  # noqa: E402
from tests.matrix.client import TestUser, from_bot, in_thread  # noqa: E402


def expected(answerer, question: str) -> Reply:
    return answerer.match(question, Conversation("matrix", "!x:y", "direct", "@u:y"))


def decrypted_from_bot(bot_id: str, room_id: str, *, reply_to: str | None = None):
    """A message from the bot that arrived encrypted and was decrypted by the test client."""
    plain = from_bot(bot_id, room_id, reply_to=reply_to)
    return lambda e: bool(e.get("encrypted")) and plain(e)


async def test_encrypted_direct_room_answer_is_encrypted_and_decryptable(
    synapse, matrix_settings, alice, bot_user, answerer, tmp_path
):
    want = expected(answerer, "社保卡丢了怎么办")
    assert want.route is Route.FAQ
    async with (
        BotRunner(matrix_settings) as runner,
        TestUser(synapse.base_url, alice, crypto_dir=tmp_path / "alice") as a,
    ):
        assert runner.bot.matrix.e2ee is not None  # on by default: the crypto dependency is installed
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
        mine = [
            e
            for e in a.events
            if e.get("sender") == bot_user.user_id and e.get("room_id") == room and e.get("type") != "m.room.member"
        ]
        assert mine and all(e.get("encrypted") for e in mine), a.summary()
        assert not a.undecryptable
        # The homeserver cannot read an encrypted answer; its push rule for encrypted direct messages notifies the
        # asker (their client then applies the rules to the decrypted m.text with its mention).
        for _ in range(100):
            pushed = {n["event"]["event_id"]: n["actions"] for n in a.notifications(synapse)}
            if ans["event_id"] in pushed:
                break
            await asyncio.sleep(0.05)
        assert "notify" in pushed[ans["event_id"]]
        await runner.flush()

    rows = db_rows(
        matrix_settings,
        "SELECT t.question, t.route, c.chat_type FROM turns t JOIN conversations c ON c.id = t.conversation_id",
    )
    assert [tuple(r) for r in rows] == [("社保卡丢了怎么办", "faq", "direct")]
    # The crypto store and the session file: private to the owner; the device id is kept.
    store = crypto_store_path(matrix_settings)
    assert store.exists() and (store.stat().st_mode & 0o777) == 0o600
    for extra in (store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")):
        assert not extra.exists() or (extra.stat().st_mode & 0o777) == 0o600
    session = load_session(session_path(matrix_settings))
    assert session.device_id == bot_user.device_id and session.access_token == ""  # the env token is not copied
    assert (session_path(matrix_settings).stat().st_mode & 0o777) == 0o600


async def test_encrypted_group_room_mention_thread_and_reactions(
    synapse, matrix_settings, alice, bob, bot_user, answerer, tmp_path
):
    async with (
        BotRunner(matrix_settings) as runner,
        TestUser(synapse.base_url, alice, crypto_dir=tmp_path / "alice") as a,
        TestUser(synapse.base_url, bob, crypto_dir=tmp_path / "bob") as b,
    ):
        room = await a.create_room([bot_user.user_id, bob.user_id], name="社保卡交流群", encrypted=True)
        await b.join(room)
        await a.wait_member(room, bot_user.user_id)
        chatter = await a.send(room, "社保卡丢了怎么办")  # not addressed to the bot
        pill = f'<a href="https://matrix.to/#/{bot_user.user_id}">问答助手</a>: 社保卡丢了怎么办'
        q = await a.send(
            room,
            "问答助手: 社保卡丢了怎么办",
            format="org.matrix.custom.html",
            formatted_body=pill,
            **{"m.mentions": {"user_ids": [bot_user.user_id]}},
        )
        ans = await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=q))
        assert ans["content"]["body"] == expected(answerer, "社保卡丢了怎么办").text
        assert ans["content"]["msgtype"] == "m.text"
        assert ans["content"]["m.mentions"] == {"user_ids": [alice.user_id]}
        # The other member's client can read it too (the keys went to every member's device).
        await b.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=q))

        # A question in a thread: answered in the thread, encrypted.
        root = await b.send(room, "有人知道电子社保卡的事吗？")
        tq = await a.send(
            room,
            "问答助手 电子社保卡怎么申领",
            **in_thread(root),
        )
        tans = await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=tq))
        assert tans["content"]["m.relates_to"]["rel_type"] == "m.thread"
        assert tans["content"]["m.relates_to"]["event_id"] == root

        # Encrypted reactions (as Element sends them): 👎, then removed (a redaction) -> withdrawn.
        down = await a.react_encrypted(room, ans["event_id"], "👎")
        up = await a.react_encrypted(room, tans["event_id"], "👍")
        for _ in range(200):  # both counted before the removal (else the 👎 would simply never count)
            await runner.flush()
            if len(db_rows(matrix_settings, "SELECT id FROM feedback")) == 2:
                break
            await asyncio.sleep(0.05)
        await a.redact(room, down)
        done = await a.send(room, "问答助手 谢谢")  # answered in order: after this, the reactions are handled
        await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=done))
        assert not [e for e in a.events if from_bot(bot_user.user_id, room, reply_to=chatter)(e)]
        assert not a.undecryptable and not b.undecryptable
        assert up
        await runner.flush()

    turns = {r["id"]: r["question"] for r in db_rows(matrix_settings, "SELECT id, question FROM turns")}
    per_turn: dict[str, list[str]] = {}
    for r in db_rows(matrix_settings, "SELECT turn_id, kind FROM feedback ORDER BY id"):
        per_turn.setdefault(turns[r["turn_id"]], []).append(r["kind"])
    # Per answer, in order (the two answers' reactions are handled concurrently, so not across answers).
    assert per_turn == {"社保卡丢了怎么办": ["down", "withdrawn"], "电子社保卡怎么申领": ["up"]}


async def test_restart_keeps_working_in_the_same_encrypted_room(
    synapse, matrix_settings, alice, bot_user, answerer, tmp_path
):
    async with TestUser(synapse.base_url, alice, crypto_dir=tmp_path / "alice") as a:
        async with BotRunner(matrix_settings):
            room = await a.create_room([bot_user.user_id], direct=True, encrypted=True)
            await a.wait_member(room, bot_user.user_id)
            q1 = await a.send(room, "社保卡丢了怎么办")
            await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=q1))
        keys_before = synapse.request(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {bot_user.user_id: []}}, token=alice.access_token
        )
        # While the bot is down the person asks again, in the same Megolm session: that one is history (not
        # answered, as in plaintext rooms), but it must not break what comes after.
        await a.send(room, "电子社保卡怎么申领")
        async with BotRunner(matrix_settings) as runner:
            q2 = await a.send(room, "人脸识别通不过怎么办")
            ans = await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=q2))
            assert ans["content"]["body"] == expected(answerer, "人脸识别通不过怎么办").text
            assert runner.bot.client.device_id == bot_user.device_id
        keys_after = synapse.request(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {bot_user.user_id: []}}, token=alice.access_token
        )
        # Same device, same identity keys: nothing for the person to verify again, nothing they cannot decrypt.
        assert keys_after["device_keys"] == keys_before["device_keys"]
        assert list(keys_after["device_keys"][bot_user.user_id]) == [bot_user.device_id]
        assert not a.undecryptable
        replies = [e for e in a.events if from_bot(bot_user.user_id, room)(e)]
        assert len(replies) == 3 and all(e.get("encrypted") for e in replies)  # welcome + two answers


async def test_undecryptable_message_gets_a_polite_request_and_a_key_request(
    synapse, matrix_settings, alice, bot_user, answerer, tmp_path
):
    async with (
        BotRunner(matrix_settings) as runner,
        TestUser(synapse.base_url, alice, crypto_dir=tmp_path / "alice") as a,
    ):
        room = await a.create_room([bot_user.user_id], direct=True, encrypted=True)
        await a.wait_member(room, bot_user.user_id)
        await a.wait_for(decrypted_from_bot(bot_user.user_id, room))  # the welcome
        lost, session_id = await a.send_undecryptable(room, "社保卡丢了怎么办")
        note = await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=lost))
        assert note["content"]["body"] == texts.MATRIX_UNDECRYPTABLE
        assert note["content"]["msgtype"] == "m.text"
        assert note["content"]["m.mentions"] == {"user_ids": [alice.user_id]}

        def key_request(e):
            c = e.get("content", {})
            return (
                e.get("type") == "m.room_key_request"
                and e.get("sender") == bot_user.user_id
                and c.get("action") == "request"
                and c.get("body", {}).get("session_id") == session_id
            )

        for _ in range(100):
            if any(key_request(e) for e in a.to_device):
                break
            await asyncio.sleep(0.05)
        assert any(key_request(e) for e in a.to_device), a.to_device

        # The next message (keys shared normally) is answered: the bot is still fine.
        q = await a.send(room, "社保卡丢了怎么办")
        ans = await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=q))
        assert ans["content"]["body"] == expected(answerer, "社保卡丢了怎么办").text
        assert runner.task is not None and not runner.task.done()
        await runner.flush()
    assert [r["question"] for r in db_rows(matrix_settings, "SELECT question FROM turns")] == ["社保卡丢了怎么办"]


async def test_lost_crypto_store_gets_a_new_device_and_keeps_answering(
    synapse, matrix_settings, alice, bot_user, answerer, tmp_path
):
    """The crypto store is deleted between two runs (password login): the bot notices at start that its device
    has keys on the server it no longer holds, logs in as a new device, publishes new keys, and the person's
    client -- told of the device change by the homeserver -- keeps talking to it in the same encrypted room."""
    from pydantic import SecretStr

    settings = matrix_settings.model_copy(update={"matrix_access_token": None})
    settings.matrix_password = SecretStr(bot_user.password)
    async with TestUser(synapse.base_url, alice, crypto_dir=tmp_path / "alice") as a:
        async with BotRunner(settings) as runner:
            first_device = runner.bot.client.device_id
            room = await a.create_room([bot_user.user_id], direct=True, encrypted=True)
            await a.wait_member(room, bot_user.user_id)
            q1 = await a.send(room, "社保卡丢了怎么办")
            await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=q1))
        assert load_session(session_path(settings)).recovery_key  # cross-signing was set up, its key kept
        store = crypto_store_path(settings)
        for p in (store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")):
            p.unlink(missing_ok=True)

        async with BotRunner(settings) as runner:
            second_device = runner.bot.client.device_id
            assert second_device != first_device
            assert load_session(session_path(settings)).device_id == second_device
            q2 = await a.send(room, "电子社保卡怎么申领")
            ans = await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=q2), timeout=15)
            assert ans["content"]["body"] == expected(answerer, "电子社保卡怎么申领").text
        assert not a.undecryptable
        # The new device is signed with the account's self-signing key (the stored recovery key), like the first.
        keys = synapse.request(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {bot_user.user_id: []}}, token=alice.access_token
        )
        ssk = next(iter(keys["self_signing_keys"][bot_user.user_id]["keys"]))
        assert ssk in keys["device_keys"][bot_user.user_id][second_device]["signatures"][bot_user.user_id]
        assert first_device not in keys["device_keys"][bot_user.user_id]  # the keyless old device was deleted
    assert os.path.exists(store) and (store.stat().st_mode & 0o777) == 0o600


async def test_malformed_encrypted_events_get_the_polite_request(synapse, matrix_settings, alice, bot_user, tmp_path):
    """Hostile or broken clients: encrypted events that cannot be decrypted at all (unknown algorithm, missing
    fields) get the request to send again; the bot keeps running and answering."""
    from mautrix.types import EventType

    async with (
        BotRunner(matrix_settings) as runner,
        TestUser(synapse.base_url, alice, crypto_dir=tmp_path / "alice") as a,
    ):
        room = await a.create_room([bot_user.user_id], direct=True, encrypted=True)
        await a.wait_member(room, bot_user.user_id)
        await a.wait_for(decrypted_from_bot(bot_user.user_id, room))  # the welcome
        # (Junk ciphertext under an unknown session id takes the missing-keys path tested above.)
        junk = [{"algorithm": "org.example.rot13", "ciphertext": "abc"}, {}]
        sent = []
        for content in junk:
            sent.append(
                str(await a.client.send_message_event(room, EventType.ROOM_ENCRYPTED, content, disable_encryption=True))
            )
        for event_id in sent:
            note = await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=event_id))
            assert note["content"]["body"] == texts.MATRIX_UNDECRYPTABLE
        q = await a.send(room, "电子社保卡怎么申领")
        await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=q))
        assert not runner.task.done()


async def test_lost_crypto_store_with_an_access_token_reuploads_keys(
    synapse, matrix_settings, bob, bot_user, answerer, tmp_path
):
    """With only an access token the bot cannot make a new device: a lost (here: damaged) store gets new keys
    published for the same device (not a failed start), and people whose clients meet the bot now can talk to it
    encrypted."""
    async with BotRunner(matrix_settings):
        pass
    store = crypto_store_path(matrix_settings)
    old_keys = synapse.request(
        "POST",
        "/_matrix/client/v3/keys/query",
        {"device_keys": {bot_user.user_id: [bot_user.device_id]}},
        token=bob.access_token,
    )["device_keys"][bot_user.user_id][bot_user.device_id]["keys"]
    store.write_bytes(b"not a database" * 100)  # a damaged store: moved aside, then the same as a lost one
    async with BotRunner(matrix_settings) as runner, TestUser(synapse.base_url, bob, crypto_dir=tmp_path / "bob") as b:
        assert runner.bot.client.device_id == bot_user.device_id
        room = await b.create_room([bot_user.user_id], direct=True, encrypted=True)
        await b.wait_member(room, bot_user.user_id)
        q = await b.send(room, "社保卡丢了怎么办")
        ans = await b.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=q))
        assert ans["content"]["body"] == expected(answerer, "社保卡丢了怎么办").text
    new_keys = synapse.request(
        "POST",
        "/_matrix/client/v3/keys/query",
        {"device_keys": {bot_user.user_id: [bot_user.device_id]}},
        token=bob.access_token,
    )["device_keys"][bot_user.user_id][bot_user.device_id]["keys"]
    assert new_keys != old_keys  # new identity keys for the same device
    aside = store.with_name(store.name + ".unreadable")
    assert aside.read_bytes().startswith(b"not a database") and (aside.stat().st_mode & 0o777) == 0o600


async def test_direct_room_that_switches_encryption_on_keeps_working(
    synapse, matrix_settings, alice, bot_user, answerer, tmp_path
):
    """The person turns encryption on in an existing direct chat (Element offers it in the room settings): the bot
    stays, and the next question and answer are encrypted."""
    from mautrix.types import EventType

    async with BotRunner(matrix_settings), TestUser(synapse.base_url, alice, crypto_dir=tmp_path / "alice") as a:
        room = await a.create_room([bot_user.user_id], direct=True)
        await a.wait_member(room, bot_user.user_id)
        q1 = await a.send(room, "社保卡丢了怎么办")
        plain = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=q1))
        assert not plain.get("encrypted")
        await a.client.send_state_event(room, EventType.ROOM_ENCRYPTION, {"algorithm": "m.megolm.v1.aes-sha2"})
        await a.wait_for(lambda e: e.get("type") == "m.room.encryption" and e.get("room_id") == room)
        q2 = await a.send(room, "电子社保卡怎么申领")
        ans = await a.wait_for(decrypted_from_bot(bot_user.user_id, room, reply_to=q2))
        assert ans["content"]["body"] == expected(answerer, "电子社保卡怎么申领").text
        assert bot_user.user_id in await a.members(room)
        assert not a.undecryptable


async def test_account_cross_signed_elsewhere_signs_the_bot_with_the_recovery_key(
    synapse, matrix_settings, bot_user, tmp_path
):
    """The operator set up cross-signing for the bot account in another client: without its recovery key the bot
    cannot sign its device (it says so and keeps working); with MATRIX_RECOVERY_KEY it signs it at start."""
    from pydantic import SecretStr

    from tests.matrix.synapse import User

    login = synapse.request(
        "POST",
        "/_matrix/client/v3/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": bot_user.user_id},
            "password": bot_user.password,
        },
    )
    other = User(bot_user.user_id, login["access_token"], login["device_id"], bot_user.password)
    async with TestUser(synapse.base_url, other, crypto_dir=tmp_path / "operator") as op:
        recovery_key = await op.crypto.generate_recovery_key()

    def bot_device_signed() -> bool:
        keys = synapse.request(
            "POST",
            "/_matrix/client/v3/keys/query",
            {"device_keys": {bot_user.user_id: []}},
            token=bot_user.access_token,
        )
        ssk = next(iter(keys["self_signing_keys"][bot_user.user_id]["keys"]))
        return ssk in keys["device_keys"][bot_user.user_id][bot_user.device_id].get("signatures", {}).get(
            bot_user.user_id, {}
        )

    async with BotRunner(matrix_settings):
        pass
    assert not bot_device_signed()
    with_key = matrix_settings.model_copy(update={"matrix_recovery_key": SecretStr(recovery_key)})
    async with BotRunner(with_key):
        pass
    assert bot_device_signed()
    assert recovery_key not in (session_path(matrix_settings).read_text())  # the operator's key stays in .env
