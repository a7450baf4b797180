"""Real long polling and webhook runs, graceful shutdown, `faqbot run` as a subprocess, and the token never
appearing in logs or output."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from aiogram.client.telegram import TelegramAPIServer

from bot.answering import texts
from bot.app.services import setup_logging
from bot.telegram.app import run_telegram
from tests.fakes.telegram_api import FakeBotAPI, LoopbackSession
from tests.support.env import clean_environ
from tests.telegram.harness import (
    FAQ_Q,
    NONE_Q,
    TEST_OPTIONS,
    ScriptedFallback,
    knowledge,
    make_services,
    make_settings,
)

ROOT = Path(__file__).resolve().parents[2]
USER = 1001


def _session(fake: FakeBotAPI) -> LoopbackSession:
    return LoopbackSession(api=TelegramAPIServer.from_base(fake.base_url))


async def test_long_polling_end_to_end_and_graceful_stop(tmp_path):
    async with FakeBotAPI() as fake:
        settings = make_settings(tmp_path, fake)
        services = await make_services(settings)
        stop = asyncio.Event()
        run = asyncio.create_task(run_telegram(services, settings, stop, options=TEST_OPTIONS, session=_session(fake)))
        await fake.wait_for("getUpdates", timeout=10)
        assert fake.calls_to("deleteWebhook") and fake.calls_to("getMe")
        [commands] = await fake.wait_for("setMyCommands", timeout=10)  # set beside polling, not before it
        assert [c["description"] for c in commands.params["commands"]] == list(texts.TG_COMMANDS.values())

        fake.push_message("/start")
        fake.push_message(FAQ_Q)
        fake.push_message(FAQ_Q, chat_type="supergroup", user_id=2002)  # un-addressed: ignored
        await fake.wait_for(lambda c: c.method == "sendMessage" and not c.failed, count=2, timeout=10)
        sent = fake.sent_texts(USER)
        assert sent[0] == texts.WELCOME and sent[1].startswith(knowledge().get("lost_reissue").question)

        # the bot also asks only for the update types it handles
        assert set(fake.allowed_updates or []) >= {"message", "edited_message", "callback_query"}

        stop.set()
        await asyncio.wait_for(run, 10)
        assert fake.updates == []  # every update was confirmed: a restart would not answer them again
        await services.aclose()
        conn = sqlite3.connect(settings.db)
        assert conn.execute("SELECT route FROM turns").fetchall() == [("faq",)]
        conn.close()


def _webhook_settings(tmp_path, fake, port):
    return make_settings(
        tmp_path,
        fake,
        telegram_webhook_url=f"http://127.0.0.1:{port}/tg/hook",
        telegram_webhook_secret="hook-secret-42",
        telegram_webhook_host="127.0.0.1",
        telegram_webhook_port=port,
    )


async def _assert_the_slow_answer_was_sent_and_logged(fake, services, settings) -> None:
    """After run_telegram returned: the answer in the making when stop was set went out, and is in the log."""
    assert fake.sent_texts(USER) == ["慢慢地回答完了。"]  # finished before run_telegram returned
    await services.aclose()  # drains the log
    conn = sqlite3.connect(settings.db)
    assert conn.execute("SELECT route, answer FROM turns").fetchall() == [("llm", "慢慢地回答完了。")]
    conn.close()


async def test_shutdown_waits_for_answers_in_flight(tmp_path):
    llm = ScriptedFallback(["慢慢", "慢慢地回答"], "慢慢地回答完了。", delay=0.4)
    async with FakeBotAPI() as fake:
        settings = make_settings(tmp_path, fake)
        services = await make_services(settings, llm=llm)
        stop = asyncio.Event()
        run = asyncio.create_task(run_telegram(services, settings, stop, options=TEST_OPTIONS, session=_session(fake)))
        await fake.wait_for("getUpdates", timeout=10)
        fake.push_message(NONE_Q)
        await asyncio.wait_for(llm.started.wait(), 10)
        stop.set()  # while the answer is being generated
        await asyncio.wait_for(run, 10)
        await _assert_the_slow_answer_was_sent_and_logged(fake, services, settings)


async def test_webhook_mode(tmp_path, port):
    async with FakeBotAPI() as fake:
        settings = _webhook_settings(tmp_path, fake, port)
        services = await make_services(settings)
        stop = asyncio.Event()
        run = asyncio.create_task(run_telegram(services, settings, stop, options=TEST_OPTIONS, session=_session(fake)))
        [hook] = await fake.wait_for("setWebhook", timeout=10)
        assert hook.params["url"] == f"http://127.0.0.1:{port}/tg/hook" and fake.webhook_secret == "hook-secret-42"
        assert not fake.calls_to("getUpdates")

        status, _ = await fake.deliver_webhook(fake.message_update(FAQ_Q))
        assert status == 200
        await fake.wait_for(lambda c: c.method == "sendMessage" and not c.failed, timeout=10)
        assert fake.sent_texts(USER)[0].startswith(knowledge().get("lost_reissue").question)

        status, _ = await fake.deliver_webhook(fake.message_update(FAQ_Q), secret_token="wrong")
        assert status == 401
        await asyncio.sleep(0.2)
        assert len(fake.sent_texts(USER)) == 1

        stop.set()
        await asyncio.wait_for(run, 10)
        assert fake.webhook_url == f"http://127.0.0.1:{port}/tg/hook"  # left set for the other instances
        await services.aclose()


async def test_webhook_shutdown_waits_for_answers_in_flight(tmp_path, port):
    """Webhook updates run in background tasks aiogram keeps to itself: our middleware's record is what shutdown
    waits for, so an answer in the making is still sent and logged."""
    llm = ScriptedFallback(["慢慢", "慢慢地回答"], "慢慢地回答完了。", delay=0.4)
    async with FakeBotAPI() as fake:
        settings = _webhook_settings(tmp_path, fake, port)
        services = await make_services(settings, llm=llm)
        stop = asyncio.Event()
        run = asyncio.create_task(run_telegram(services, settings, stop, options=TEST_OPTIONS, session=_session(fake)))
        await fake.wait_for("setWebhook", timeout=10)
        status, _ = await fake.deliver_webhook(fake.message_update(NONE_Q))
        assert status == 200  # answered at once; the update is handled in the background
        await asyncio.wait_for(llm.started.wait(), 10)
        stop.set()  # while the answer is being generated
        await asyncio.wait_for(run, 10)
        await _assert_the_slow_answer_was_sent_and_logged(fake, services, settings)


async def test_bot_token_never_in_logs(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # setup_logging changes the root level: restore it after
    async with FakeBotAPI() as fake:
        settings = make_settings(tmp_path, fake, log_level="DEBUG")
        setup_logging(settings)  # installs the redaction filter on the handlers, pytest's capture included
        services = await make_services(settings)
        fake.fail("getUpdates", status=0)  # aiogram logs the failed poll
        fake.fail("sendMessage", status=502)  # our retry warning
        stop = asyncio.Event()
        run = asyncio.create_task(run_telegram(services, settings, stop, options=TEST_OPTIONS, session=_session(fake)))
        await fake.wait_for(lambda c: c.method == "getUpdates" and not c.failed, timeout=15)
        fake.push_message(FAQ_Q)
        await fake.wait_for(lambda c: c.method == "sendMessage" and not c.failed, timeout=10)
        stop.set()
        await asyncio.wait_for(run, 10)
        await services.aclose()
    secret_part = fake.token.split(":", 1)[1]
    assert "retry 1/" in caplog.text and "Failed to fetch updates" in caplog.text
    assert fake.token not in caplog.text and secret_part not in caplog.text
    for record in caplog.records:
        assert secret_part not in record.getMessage()


@pytest.mark.load
def test_faqbot_run_subprocess_stops_cleanly_on_sigterm(tmp_path):
    asyncio.run(_faqbot_run(tmp_path))


async def _faqbot_run(tmp_path: Path) -> None:
    async with FakeBotAPI() as fake:
        env = clean_environ()
        env.update(
            TELEGRAM_BOT_TOKEN=fake.token,
            TELEGRAM_API_URL=fake.base_url,
            FAQBOT_DB=str(tmp_path / "run.db"),
            FAQBOT_LOG_LEVEL="DEBUG",
            PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await fake.wait_for("getUpdates", timeout=60)
            fake.push_message(FAQ_Q)
            fake.push_message("/help", user_id=2002)
            await fake.wait_for(lambda c: c.method == "sendMessage" and not c.failed, count=2, timeout=20)
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        stdout, stderr = out.decode(), err.decode()
        assert proc.returncode == 0, stderr[-3000:]
        assert fake.token not in stdout + stderr and fake.token.split(":", 1)[1] not in stdout + stderr
        assert "Start polling" in stderr or "long polling" in stderr  # logging did run
        assert fake.updates == []
    conn = sqlite3.connect(tmp_path / "run.db")
    try:
        assert conn.execute("SELECT route, channel FROM turns").fetchall() == [("faq", "telegram")]
    finally:
        conn.close()
    assert (tmp_path / "secret.key").exists()  # pseudonymization secret created next to the database


async def test_run_transports_configuration_errors_and_a_rejected_token(tmp_path, monkeypatch, capsys, caplog):
    from bot.app.runner import ConfigurationError, run_transports

    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)
    with pytest.raises(ConfigurationError, match="TELEGRAM_BOT_TOKEN"):
        await run_transports(make_settings(tmp_path), ["telegram"])
    with pytest.raises(ConfigurationError, match="unknown transport"):
        await run_transports(make_settings(tmp_path), ["irc"])

    async with FakeBotAPI() as fake:
        wrong = "42:AAWrongTokenWrongTokenWrongToken12345"
        settings = make_settings(tmp_path, fake, telegram_bot_token=wrong)
        assert await run_transports(settings, ["telegram"]) == 1  # getMe answered 401
        assert fake.calls_to("getMe")[0].status == 401
    out = capsys.readouterr()
    assert wrong not in out.out + out.err + caplog.text
    assert "Telegram refused the bot token" in caplog.text


async def test_follow_ups_waiting_at_start_are_sent_once(tmp_path):
    """Requests to be told (issue 13) left from before a restart: at start the bot sends each question that now gets
    a direct answer once and forgets the chat id; a question still without an answer keeps waiting, silently."""
    from bot.answering.follow_ups import follow_up_text
    from storage import subscriptions

    waiting, still_open = 3003, 3004
    async with FakeBotAPI() as fake:
        settings = make_settings(tmp_path, fake)
        services = await make_services(settings)
        notify_db = subscriptions.path_for(settings.db)
        subscriptions.subscribe(notify_db, channel="telegram", chat_id=str(waiting), turn_id="1" * 16, question=FAQ_Q)
        subscriptions.subscribe(
            notify_db, channel="telegram", chat_id=str(still_open), turn_id="2" * 16, question=NONE_Q
        )
        stop = asyncio.Event()
        run = asyncio.create_task(run_telegram(services, settings, stop, options=TEST_OPTIONS, session=_session(fake)))
        try:
            [sent] = await fake.wait_for(lambda c: c.method == "sendMessage" and not c.failed, timeout=10)
            await fake.wait_for("getUpdates", timeout=10)
        finally:
            stop.set()
            await asyncio.wait_for(run, 10)
            await services.aclose()
        assert str(sent.params["chat_id"]) == str(waiting)
        assert sent.params["text"] == follow_up_text(FAQ_Q, services.answerer.match(FAQ_Q).text)
        assert fake.sent_texts(still_open) == [] and len(fake.sent_texts(waiting)) == 1
        assert [p["chat_id"] for p in subscriptions.pending(notify_db, "telegram")] == [str(still_open)]
