"""The Matrix transport against a real Synapse on 127.0.0.1 (see tests/matrix/synapse.py), with the real answering core
and a real SQLite log in tmp. Test users talk to the bot through a real mautrix client."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("mautrix")

from bot.answering import texts  # noqa: E402
from bot.answering.types import Conversation, Draft, Reply, Route  # noqa: E402
from tests.matrix.bot_runner import BotRunner, db_rows  # noqa: E402
from tests.matrix.client import TestUser, from_bot, in_thread  # noqa: E402


def expected(answerer, question: str, conv: Conversation | None = None) -> Reply:
    return answerer.match(question, conv or Conversation("matrix", "!x:y", "direct", "@u:y"))


async def dm_with_bot(user: TestUser, bot_id: str) -> str:
    room = await user.create_room([bot_id], direct=True)
    await user.wait_member(room, bot_id)
    return room


async def group_with_bot(owner: TestUser, other: TestUser, bot_id: str) -> str:
    room = await owner.create_room([bot_id, other.user_id], name="社保卡交流群")
    await other.join(room)
    await owner.wait_member(room, bot_id)
    return room


async def test_direct_room_question_gets_the_curated_answer(synapse, matrix_settings, alice, bot_user, answerer):
    want = expected(answerer, "社保卡丢了怎么办")
    assert want.route is Route.FAQ
    async with BotRunner(matrix_settings) as runner, TestUser(synapse.base_url, alice) as a:
        room = await dm_with_bot(a, bot_user.user_id)
        welcome = await a.wait_for(from_bot(bot_user.user_id, room))
        assert welcome["content"]["body"] == texts.MATRIX_WELCOME

        q = await a.send(room, "社保卡丢了怎么办")
        ans = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=q))
        c = ans["content"]
        assert c["msgtype"] == "m.text"  # an answer to a person: notifies them (m.notice would be silenced)
        assert c["m.mentions"] == {"user_ids": [alice.user_id]}
        assert welcome["content"]["msgtype"] == "m.notice"  # unsolicited
        assert c["body"] == want.text
        assert c["format"] == "org.matrix.custom.html"
        title, answer_first = want.text.split("\n\n", 1)[0], want.text.split("\n\n", 1)[1].split("\n")[0]
        assert c["formatted_body"].startswith(f"<p><strong>{title}</strong></p><p>")
        assert answer_first[:20] in c["formatted_body"]
        assert c["m.relates_to"] == {"m.in_reply_to": {"event_id": q}}

        # Non-text in a direct room: a polite "text only".
        loc = await a.send(room, "我的位置", msgtype="m.location", geo_uri="geo:38.0,114.5")
        note = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=loc))
        assert note["content"]["body"] == texts.NON_TEXT
        odd = await a.send(room, "?", msgtype="org.example.custom")  # an unknown msgtype
        note = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=odd))
        assert note["content"]["body"] == texts.NON_TEXT
        await runner.flush()

    rows = db_rows(
        matrix_settings,
        "SELECT t.*, c.chat_type, c.chat_id, c.user_hash FROM turns t JOIN conversations c ON c.id = t.conversation_id",
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row["channel"], row["route"], row["faq_id"], row["chat_type"]) == ("matrix", "faq", want.faq_id, "direct")
    assert row["question"] == "社保卡丢了怎么办" and row["answer"] == want.text
    assert row["user_hash"] and alice.user_id not in json.dumps(dict(row), ensure_ascii=False)


async def test_group_room_answers_only_when_addressed(synapse, matrix_settings, alice, bob, bot_user, answerer):
    async with (
        BotRunner(matrix_settings) as runner,
        TestUser(synapse.base_url, alice) as a,
        TestUser(synapse.base_url, bob) as b,
    ):
        room = await group_with_bot(a, b, bot_user.user_id)
        not_for_bot = await a.send(room, "社保卡丢了怎么办")  # people talking among themselves
        by_name = await a.send(room, "问答助手 社保卡丢了怎么办")
        ans = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=by_name))
        assert ans["content"]["body"] == expected(answerer, "社保卡丢了怎么办").text
        assert ans["content"]["m.mentions"] == {"user_ids": [alice.user_id]}
        # Same conversation, handled in order: the unaddressed message came first and got nothing.
        assert not [e for e in a.events if from_bot(bot_user.user_id, room, reply_to=not_for_bot)(e)]

        # A pill mention with m.mentions (what Element sends).
        pill = f'<a href="https://matrix.to/#/{bot_user.user_id}">问答助手</a>: 电子社保卡怎么申领'
        by_pill = await b.send(
            room,
            "问答助手: 电子社保卡怎么申领",
            format="org.matrix.custom.html",
            formatted_body=pill,
            **{"m.mentions": {"user_ids": [bot_user.user_id]}},
        )
        ans2 = await b.wait_for(from_bot(bot_user.user_id, room, reply_to=by_pill))
        assert ans2["content"]["body"] == expected(answerer, "电子社保卡怎么申领").text

        # A reply to one of the bot's messages, without a mention.
        follow = await b.send(
            room, "人脸识别通不过怎么办", **{"m.relates_to": {"m.in_reply_to": {"event_id": ans2["event_id"]}}}
        )
        ans3 = await b.wait_for(from_bot(bot_user.user_id, room, reply_to=follow))
        assert ans3["content"]["body"] == expected(answerer, "人脸识别通不过怎么办").text

        # Clarify in a group: the asker answers with a bare number; another member's bare number is not a pick.
        offer_q = await a.send(room, "@" + bot_user.user_id.lstrip("@") + " 社保卡")
        offer = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=offer_q))
        want_offer = expected(answerer, "社保卡")
        assert want_offer.route is Route.CLARIFY and offer["content"]["body"] == want_offer.text
        bob_two = await b.send(room, "2")
        alice_two = await a.send(room, "2")
        picked = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=alice_two))
        chosen = answerer.kb.get(want_offer.choices[1].faq_id)
        assert picked["content"]["body"] == texts.faq_text(chosen.question, chosen.answer)
        await a.quiet(from_bot(bot_user.user_id, room, reply_to=bob_two), 0.3)
        await runner.flush()

    rows = db_rows(
        matrix_settings, "SELECT DISTINCT c.chat_type FROM turns t JOIN conversations c ON c.id = t.conversation_id"
    )
    assert [r["chat_type"] for r in rows] == ["group"]
    assert db_rows(matrix_settings, "SELECT count(*) n FROM turns")[0]["n"] == 5


async def test_question_in_a_thread_is_answered_in_the_thread(synapse, matrix_settings, alice, bob, bot_user, answerer):
    async with BotRunner(matrix_settings), TestUser(synapse.base_url, alice) as a, TestUser(synapse.base_url, bob) as b:
        room = await group_with_bot(a, b, bot_user.user_id)
        root = await b.send(room, "有人知道电子社保卡的事吗？")
        q = await a.send(
            room,
            "问答助手 电子社保卡怎么申领",
            **in_thread(root),
        )
        ans = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=q))
        assert ans["content"]["m.relates_to"] == {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": False,
            "m.in_reply_to": {"event_id": q},
        }
        assert ans["content"]["body"] == expected(answerer, "电子社保卡怎么申领").text
        # The thread root (no mention) got no answer of its own.
        assert not [e for e in a.events if from_bot(bot_user.user_id, room, reply_to=root)(e)]


async def test_reactions_are_logged_as_feedback(synapse, matrix_settings, alice, bot_user):
    async with BotRunner(matrix_settings) as runner, TestUser(synapse.base_url, alice) as a:
        room = await dm_with_bot(a, bot_user.user_id)
        q1 = await a.send(room, "社保卡丢了怎么办")
        ans1 = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=q1))
        q2 = await a.send(room, "电子社保卡怎么申领")
        ans2 = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=q2))
        await a.react(room, ans1["event_id"], "👍️")
        down2 = await a.react(room, ans2["event_id"], "👎")
        await a.react(room, ans2["event_id"], "❤️")  # not feedback
        await a.react(room, q1, "👍")  # on the user's own message: not feedback
        # Changing one's mind: 👍 next to the 👎, then the 👎 removed (the 👍 counts), then the 👍 removed too.
        up2 = await a.react(room, ans2["event_id"], "👍")
        await a.redact(room, down2)
        await a.redact(room, up2)
        done = await a.send(room, "谢谢")  # the bot answers in order: once this is answered, the reactions are handled
        await a.wait_for(from_bot(bot_user.user_id, room, reply_to=done))
        await asyncio.sleep(0.2)
        await runner.flush()
        turns = {r["id"]: r["question"] for r in db_rows(matrix_settings, "SELECT id, question FROM turns")}

    fb = db_rows(matrix_settings, "SELECT turn_id, kind FROM feedback ORDER BY id")
    assert [(turns[r["turn_id"]], r["kind"]) for r in fb] == [
        ("社保卡丢了怎么办", "up"),
        ("电子社保卡怎么申领", "down"),
        ("电子社保卡怎么申领", "up"),
        ("电子社保卡怎么申领", "up"),
        ("电子社保卡怎么申领", "withdrawn"),
    ]
    # Latest state wins: the review side sees 👍 on the first answer and nothing on the second.
    from storage import queries
    from storage.db import open_db_sync

    conn = open_db_sync(matrix_settings.db)
    try:
        s = queries.stats(conn)
        assert (s["thumbs_up"], s["thumbs_down"]) == (1, 0)
        assert not [g for g in queries.gap_rows(conn) if "thumbs-down" in g["reasons"]]
    finally:
        conn.close()


async def test_invites_follow_the_allow_list(synapse, matrix_settings, alice, bot_user):
    async with TestUser(synapse.base_url, alice) as a:
        allowed_room = await a.create_room(name="allowed")
        other_room = await a.create_room(name="other")
        encrypted_room = await a.create_room(name="secret", encrypted=True)
        settings = matrix_settings.model_copy(update={"matrix_allowed": [allowed_room]})
        async with BotRunner(settings) as runner:
            await a.invite(other_room, bot_user.user_id)
            await a.invite(allowed_room, bot_user.user_id)
            await a.wait_member(allowed_room, bot_user.user_id)
            for _ in range(100):
                if await a.membership_of(other_room, bot_user.user_id) == "leave":
                    break
                await asyncio.sleep(0.05)
            assert await a.membership_of(other_room, bot_user.user_id) == "leave"
            assert allowed_room in runner.bot.rooms.joined and other_room not in runner.bot.rooms.joined

        # Allowed by server name; with encryption switched off (MATRIX_E2EE=false) an encrypted room is joined only
        # to say it cannot work there, then left.
        settings = matrix_settings.model_copy(
            update={"matrix_allowed": ["elsewhere.example", "faqbot.test"], "matrix_e2ee": False}
        )
        async with BotRunner(settings) as runner:
            await a.invite(encrypted_room, bot_user.user_id)
            assert runner.bot.matrix.e2ee is None
            notice = await a.wait_for(from_bot(bot_user.user_id, encrypted_room), timeout=10)
            assert notice["content"]["body"] == texts.MATRIX_ENCRYPTED_ROOM
            assert notice["type"] == "m.room.message"  # plaintext: the bot has no keys to encrypt with
            await a.wait_member(encrypted_room, bot_user.user_id, present=False)
            # Joined from another device, on an allowed server (room ids carry no server: the creator's counts).
            open_room = await a.create_room(name="open", public=True)
            synapse.request("POST", f"/_matrix/client/v3/join/{open_room}", {}, token=bot_user.access_token)
            for _ in range(100):
                if open_room in runner.bot.rooms.joined:
                    break
                await asyncio.sleep(0.05)
            assert open_room in runner.bot.rooms.joined
            q = await a.send(open_room, "问答助手 社保卡丢了怎么办")
            await a.wait_for(from_bot(bot_user.user_id, open_room, reply_to=q))

        # A server that is not listed: the invite is refused, and a room joined some other way (the bot account
        # joining a public room from another device) is left.
        settings = matrix_settings.model_copy(update={"matrix_allowed": ["elsewhere.example"]})
        third = await a.create_room(name="third")
        lobby = await a.create_room(name="lobby", public=True)
        async with BotRunner(settings):
            await a.invite(third, bot_user.user_id)
            synapse.request("POST", f"/_matrix/client/v3/join/{lobby}", {}, token=bot_user.access_token)
            for room in (third, lobby):
                for _ in range(100):
                    if await a.membership_of(room, bot_user.user_id) == "leave":
                        break
                    await asyncio.sleep(0.05)
                assert await a.membership_of(room, bot_user.user_id) == "leave"


async def test_restart_does_not_answer_messages_from_before_the_start(synapse, matrix_settings, alice, bot_user):
    async with TestUser(synapse.base_url, alice) as a:
        async with BotRunner(matrix_settings):
            room = await dm_with_bot(a, bot_user.user_id)
            q1 = await a.send(room, "社保卡丢了怎么办")
            await a.wait_for(from_bot(bot_user.user_id, room, reply_to=q1))
        # The bot is down: a question in its room, and an invite to a new room with a question in it.
        missed = await a.send(room, "电子社保卡怎么申领")
        new_room = await a.create_room([bot_user.user_id], direct=True)
        missed_new = await a.send(new_room, "电子社保卡怎么申领")
        async with BotRunner(matrix_settings) as runner:
            # Its first sync saw the room it is in (a fresh snapshot, not Synapse's cached one from the last start).
            assert room in runner.bot.rooms.known_rooms
            await a.wait_member(new_room, bot_user.user_id)
            q2 = await a.send(room, "人脸识别通不过怎么办")
            q3 = await a.send(new_room, "社保卡丢了怎么办")
            await a.wait_for(from_bot(bot_user.user_id, room, reply_to=q2))
            await a.wait_for(from_bot(bot_user.user_id, new_room, reply_to=q3))
            await runner.flush()
        for old in (missed, missed_new):
            assert not [e for e in a.events if from_bot(bot_user.user_id, reply_to=old)(e)]
    questions = [r["question"] for r in db_rows(matrix_settings, "SELECT question FROM turns ORDER BY id")]
    assert questions == ["社保卡丢了怎么办", "人脸识别通不过怎么办", "社保卡丢了怎么办"]


async def test_clarify_answered_by_number(synapse, matrix_settings, alice, bot_user, answerer):
    offer = expected(answerer, "社保卡")
    assert offer.route is Route.CLARIFY and len(offer.choices) >= 2
    async with BotRunner(matrix_settings) as runner, TestUser(synapse.base_url, alice) as a:
        room = await dm_with_bot(a, bot_user.user_id)
        q = await a.send(room, "社保卡")
        ans = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=q))
        assert ans["content"]["body"] == offer.text
        assert ans["content"]["formatted_body"].count("<li>") == len(offer.choices)
        pick = await a.send(room, "2")
        chosen = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=pick))
        entry = answerer.kb.get(offer.choices[1].faq_id)
        assert chosen["content"]["body"] == texts.faq_text(entry.question, entry.answer)
        assert chosen["content"]["formatted_body"].startswith(f"<p><strong>{entry.question}</strong></p>")

        q2 = await a.send(room, "社保卡")
        await a.wait_for(from_bot(bot_user.user_id, room, reply_to=q2))
        zero = await a.send(room, "0")
        ack = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=zero))
        assert ack["content"]["body"] == texts.NONE_OF_THESE_ACK
        await runner.flush()

    turns = db_rows(matrix_settings, "SELECT id, route, faq_id, via FROM turns ORDER BY id")
    assert [(t["route"], t["faq_id"]) for t in turns] == [
        ("clarify", None),
        ("faq", entry.id),
        ("clarify", None),
        ("none", None),
    ]
    fb = db_rows(matrix_settings, "SELECT turn_id, kind FROM feedback")
    assert [(r["turn_id"], r["kind"]) for r in fb] == [(turns[2]["id"], "none")]


class SlowFallback:
    """Stands in for the LLM fallback (not under test here): a Draft, a pause, then the verified final Reply."""

    def __init__(self, delay: float):
        self.delay = delay
        self.started = asyncio.Event()

    async def stream(self, base: Reply, conv: Conversation):
        self.started.set()
        yield Draft("未经核实的草稿")
        await asyncio.sleep(self.delay)
        base.route, base.text, base.guard = Route.LLM, "根据常见问题：请携带身份证到服务网点办理。", "pass"
        yield base


async def test_typing_verified_llm_answer_and_graceful_shutdown(synapse, matrix_settings, alice, bot_user):
    from bot.app.services import build_services
    from bot.matrix.app import run_matrix

    services = await build_services(matrix_settings, with_llm=False)
    slow = SlowFallback(delay=1.0)
    services.answerer.llm = slow
    stop = asyncio.Event()
    async with TestUser(synapse.base_url, alice) as a:
        task = asyncio.create_task(run_matrix(services, matrix_settings, stop))
        room = await dm_with_bot(a, bot_user.user_id)
        q = await a.send(room, "我想问一下养老金怎么算")  # not in the FAQ: goes to the (slow) fallback
        await asyncio.wait_for(slow.started.wait(), 10)
        typing = await a.client.sync(timeout=0, filter_id=json.dumps({"room": {"rooms": [room]}}))
        typing_users = [
            e["content"]["user_ids"]
            for e in typing["rooms"]["join"][room]["ephemeral"]["events"]
            if e["type"] == "m.typing"
        ]
        assert typing_users and bot_user.user_id in typing_users[-1]
        stop.set()  # shut down while the answer is being worked on
        await asyncio.wait_for(task, 15)
        assert task.exception() is None
        ans = await a.wait_for(from_bot(bot_user.user_id, room, reply_to=q), timeout=5)
        assert ans["content"]["body"] == "根据常见问题：请携带身份证到服务网点办理。"
        assert not [e for e in a.events if "草稿" in str(e.get("content", {}).get("body", ""))]
    await services.aclose()
    rows = db_rows(matrix_settings, "SELECT route, guard FROM turns")
    assert [(r["route"], r["guard"]) for r in rows] == [("llm", "pass")]


async def test_password_login_stores_and_reuses_the_session(synapse, matrix_settings, bot_user, tmp_path):
    from mautrix.client import Client

    from bot.matrix.session import authenticate, load_session, session_path

    settings = matrix_settings.model_copy(update={"matrix_access_token": None, "matrix_password": bot_user.password})
    # model_copy does not validate: give the password the SecretStr type the settings use.
    from pydantic import SecretStr

    settings.matrix_password = SecretStr(bot_user.password)
    path = session_path(settings)
    assert path == settings.db.parent / "matrix-session.json"

    async def login() -> Client:
        client = Client(base_url=synapse.base_url)
        try:
            await authenticate(client, settings)
        finally:
            await client.api.session.close()
        return client

    first = await login()
    stored = load_session(path)
    assert stored.user_id == bot_user.user_id and stored.access_token == first.api.token
    assert (path.stat().st_mode & 0o777) == 0o600
    second = await login()
    assert second.api.token == first.api.token and second.device_id == first.device_id  # reused, no new login

    # A revoked token: log in again (same device) and store the new token.
    synapse.request("POST", "/_matrix/client/v3/logout", {}, token=first.api.token)
    third = await login()
    assert third.api.token != first.api.token and third.device_id == first.device_id
    assert load_session(path).access_token == third.api.token


async def test_answers_notify_the_asker_through_push_rules(synapse, matrix_settings, alice, bob, bot_user):
    """Synapse's default push rules, read back through /notifications: the welcome (m.notice) notifies nobody;
    an answer (m.text) notifies the asker in a direct room and highlights them (intentional mention) in a group --
    an m.notice answer would have been silenced by .m.rule.suppress_notices before the mention rule."""
    async with BotRunner(matrix_settings), TestUser(synapse.base_url, alice) as a, TestUser(synapse.base_url, bob) as b:
        dm = await dm_with_bot(a, bot_user.user_id)
        welcome = await a.wait_for(from_bot(bot_user.user_id, dm))
        q = await a.send(dm, "社保卡丢了怎么办")
        dm_answer = await a.wait_for(from_bot(bot_user.user_id, dm, reply_to=q))
        group = await group_with_bot(a, b, bot_user.user_id)
        gq = await a.send(group, "问答助手 电子社保卡怎么申领")
        group_answer = await a.wait_for(from_bot(bot_user.user_id, group, reply_to=gq))

        def notified(user: TestUser) -> dict[str, list]:
            return {n["event"]["event_id"]: n["actions"] for n in user.notifications(synapse)}

        for _ in range(100):  # push actions are written as the events are persisted; normally already there
            seen = notified(a)
            if dm_answer["event_id"] in seen and group_answer["event_id"] in seen:
                break
            await asyncio.sleep(0.05)
        assert dm_answer["event_id"] in seen and "notify" in seen[dm_answer["event_id"]]
        group_actions = seen[group_answer["event_id"]]
        assert "notify" in group_actions and {"set_tweak": "highlight"} in group_actions  # mentioned
        assert welcome["event_id"] not in seen  # unsolicited notices stay quiet
        # Bob did not ask: the answer to Alice is not a mention of him.
        bob_seen = notified(b)
        assert {"set_tweak": "highlight"} not in bob_seen.get(group_answer["event_id"], [])


async def test_runner_with_only_an_access_token_and_private_room_ids_in_the_log(
    synapse, matrix_settings, alice, bot_user, caplog
):
    """`faqbot run` needs no MATRIX_USER_ID next to an access token (whoami names the user); the process log names
    a direct room by the pseudonym the conversation log stores for it, never by its id."""
    import logging

    from bot.app.runner import run_transports

    settings = matrix_settings.model_copy(update={"matrix_user_id": None})
    caplog.set_level(logging.INFO, logger="faqbot")
    async with TestUser(synapse.base_url, alice) as a:
        task = asyncio.create_task(run_transports(settings, ["matrix"]))
        room = await dm_with_bot(a, bot_user.user_id)
        q = await a.send(room, "社保卡丢了怎么办")
        await a.wait_for(from_bot(bot_user.user_id, room, reply_to=q), timeout=20)
        task.cancel()  # the runner stops the transport and drains the log on its way out
        with pytest.raises(asyncio.CancelledError):
            await task
    stored = db_rows(settings, "SELECT chat_id FROM conversations WHERE chat_type = 'direct'")
    assert len(stored) == 1 and stored[0]["chat_id"] != room
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("faqbot")]
    assert any(f"joined direct room {stored[0]['chat_id']}" in line for line in lines), lines
    assert not [line for line in lines if room in line]
    assert not [line for line in lines if bot_user.access_token in line or alice.user_id in line]


async def test_encryption_setting_and_required_matrix_settings(matrix_settings, monkeypatch):
    """MATRIX_E2EE defaults to 'on when the crypto dependency is installed'; asking for it without the dependency is
    a clear configuration error; the runner wants a token, or a user id with a password."""
    import bot.matrix.app as app
    import bot.matrix.sync as sync
    from bot.app.runner import _config_error
    from bot.app.services import build_services
    from bot.matrix.session import MatrixConfigError

    services = await build_services(matrix_settings, with_log=False, with_llm=False)
    assert app.MatrixBot(services, matrix_settings).matrix.e2ee_on is True
    off = matrix_settings.model_copy(update={"matrix_e2ee": False})
    assert app.MatrixBot(services, off).matrix.e2ee_on is False
    monkeypatch.setattr(sync, "E2EE", None)  # as on a machine without python-olm
    assert app.MatrixBot(services, matrix_settings).matrix.e2ee_on is False
    with pytest.raises(MatrixConfigError, match="MATRIX_E2EE=true needs the crypto dependency"):
        app.MatrixBot(services, matrix_settings.model_copy(update={"matrix_e2ee": True}))

    assert _config_error(matrix_settings.model_copy(update={"matrix_user_id": None}), ["matrix"]) is None
    no_token = matrix_settings.model_copy(update={"matrix_access_token": None})
    assert "MATRIX_ACCESS_TOKEN" in _config_error(no_token, ["matrix"])
