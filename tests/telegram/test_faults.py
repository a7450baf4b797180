"""Faults of the Bot API (or of a proxy in front of it) through real aiogram long polling against the loopback
fake: unreadable answers to calls that were carried out, HTML error pages on start-up calls, unreadable update
batches that aiogram dumps into the log. What the users receive and what the process logs are asserted."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from pathlib import Path

import pytest
from aiogram.client.telegram import TelegramAPIServer

from bot.answering import texts
from bot.app.services import setup_logging
from bot.telegram.app import run_telegram
from tests.fakes.telegram_api import FakeBotAPI, LoopbackSession
from tests.support.cli import faqbot_async
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
ID_NUMBER = "110105194912310021"
PHONE = "13812345678"


def _session(fake: FakeBotAPI) -> LoopbackSession:
    return LoopbackSession(api=TelegramAPIServer.from_base(fake.base_url))


@pytest.fixture
def logs(caplog, monkeypatch):
    """caplog at DEBUG with faqbot's log privacy installed on its handler (as `faqbot run` does)."""
    caplog.set_level(logging.DEBUG)
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # setup_logging changes the root level: restore it after
    return caplog


class Bot:
    """run_telegram on the fake, started and stopped by the test (stop waits for every handler to finish)."""

    def __init__(self, fake: FakeBotAPI, tmp_path: Path, options=TEST_OPTIONS, llm=None, **settings) -> None:
        self.fake = fake
        self.options = options
        self.llm = llm
        self.settings = make_settings(tmp_path, fake, **settings)
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Bot:
        setup_logging(self.settings)
        self.services = await make_services(self.settings, llm=self.llm)
        self.task = asyncio.create_task(
            run_telegram(self.services, self.settings, self.stop, options=self.options, session=_session(self.fake))
        )
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 20)  # re-raises a transport failure
        await self.services.aclose()


@pytest.mark.parametrize("kind", ["syntax", "schema"])
async def test_a_delivered_message_with_an_unreadable_answer_is_neither_resent_nor_apologised_for(tmp_path, logs, kind):
    answer = knowledge().get("lost_reissue").question
    async with FakeBotAPI() as fake:
        fake.undecodable("sendMessage", kind=kind, times=100)  # every message is delivered, every answer unreadable
        async with Bot(fake, tmp_path):
            await fake.wait_for("getUpdates", timeout=15)
            fake.push_message(FAQ_Q, user_id=1001)  # an answer from the core
            fake.push_message("/start", user_id=2002)  # a command handler: the error reaches the error handler
            await fake.wait_for("sendMessage", count=2, timeout=15)
        # stopped: every handler (and any retry or apology it would make) has finished
        assert [t[: len(answer)] for t in fake.sent_texts(1001)] == [answer]
        assert fake.sent_texts(2002) == [texts.WELCOME]
        assert len(fake.calls_to("sendMessage")) == 2  # no retry, no apology (texts.ERROR)
    assert "retry" not in logs.text


async def test_html_502_on_a_message_is_still_retried_and_shown_once(tmp_path, logs):
    async with FakeBotAPI() as fake:
        fake.fail("sendMessage", status=502, times=2)  # nginx page: the Bot API was not reached
        async with Bot(fake, tmp_path):
            await fake.wait_for("getUpdates", timeout=15)
            fake.push_message(FAQ_Q)
            await fake.wait_for(lambda c: c.method == "sendMessage" and not c.failed, timeout=15)
        assert len(fake.sent_texts(1001)) == 1 and len(fake.calls_to("sendMessage")) == 3
    assert "retry 2/" in logs.text


async def test_failing_cosmetic_start_up_calls_are_warnings_and_the_bot_answers(tmp_path, logs):
    async with FakeBotAPI() as fake:
        fake.fail("setMyCommands", status=502, times=100)  # a proxy's HTML page, every attempt
        fake.fail("deleteWebhook", status=502, times=100)
        async with Bot(fake, tmp_path, admin_ids=[7]) as bot:
            await fake.wait_for("getUpdates", timeout=15)
            fake.push_message(FAQ_Q)
            await fake.wait_for(lambda c: c.method == "sendMessage" and not c.failed, timeout=15)
            assert not bot.task.done()
        assert len(fake.sent_texts(1001)) == 1
    assert "setMyCommands failed (UnreadableResponse)" in logs.text
    assert "deleteWebhook failed (UnreadableResponse); polling anyway" in logs.text


@pytest.mark.parametrize("kind", ["syntax", "schema"])
async def test_an_unreadable_update_batch_is_logged_without_personal_data(tmp_path, logs, kind):
    question = f"我叫王小明，身份证{ID_NUMBER}，手机 138 1234 5678，社保卡丢了怎么办"
    async with FakeBotAPI() as fake:
        fake.undecodable("getUpdates", kind=kind)  # the first poll: aiogram logs the raw batch
        fake.push_message(question, user_id=1001, first_name="王小明", username="wang_xiaoming88")
        async with Bot(fake, tmp_path):
            # aiogram backs off (about a second), polls again and gets the same update
            await fake.wait_for(lambda c: c.method == "sendMessage" and not c.failed, timeout=20)
        assert len(fake.sent_texts(1001)) == 1
    assert "Failed to fetch updates" in logs.text and "[身份证号]" in logs.text
    for raw in ("王小明", "wang_xiaoming88", ID_NUMBER, "138 1234 5678", "1234 5678"):
        assert raw not in logs.text, raw


def test_library_and_own_loggers_mask_personal_data(logs):
    from bot.app.settings import Settings

    setup_logging(Settings(_env_file=None))
    event = {"sender": "@alice:matrix.example", "content": {"body": f"我的手机{PHONE}"}, "displayname": "Alice Zhang"}
    logging.getLogger("mau.client.sync").warning("could not handle event %s", event)
    logging.getLogger("aiogram.event").info("User(id=5, first_name='李四', last_name=\"O'Neil\", username='lisi')")
    logging.getLogger("faqbot.core").warning("question: 身份证 %s", ID_NUMBER)
    logging.getLogger("mau.crypto").warning("no session for a message from @bob.smith:matrix.example in !r:hs")
    for raw in (PHONE, "alice", "Alice Zhang", "李四", "O'Neil", "lisi", ID_NUMBER, "bob.smith"):
        assert raw not in logs.text, raw
    assert "@[姓名]:matrix.example" in logs.text
    assert "[手机号]" in logs.text and "[身份证号]" in logs.text and "first_name=" in logs.text


@pytest.mark.load
async def test_fault_storm_each_user_gets_exactly_one_answer(tmp_path, logs):
    """Load with faults: 40 users ask at once while sendMessage answers are by turns unreadable-but-delivered,
    nginx 502 pages (not delivered), flood control, and the first update batch is unreadable."""
    rng = random.Random(12)
    users = list(range(3001, 3041))
    async with FakeBotAPI() as fake:
        fake.fail("setMyCommands", status=502, times=5)
        fake.undecodable("getUpdates", kind="syntax")
        for _ in range(60):
            choice = rng.choice(["undecodable", "502", "429"])
            if choice == "undecodable":
                fake.undecodable("sendMessage", kind=rng.choice(["syntax", "schema"]))
            elif choice == "502":
                fake.fail("sendMessage", status=502)
            else:
                fake.fail("sendMessage", status=429, retry_after=1)
        for user in users:
            fake.push_message(f"{FAQ_Q}？我的卡号 6222 0212 3456 7890 128", user_id=user, first_name=f"用户{user}")
        # enough retries that no user runs out of them, whatever share of the faults their message draws
        async with Bot(fake, tmp_path, options=dataclasses.replace(TEST_OPTIONS, retry_attempts=100)):
            await fake.wait_for(lambda c: c.method == "sendMessage" and not c.failed, count=len(users), timeout=60)
        for user in users:
            sent = fake.sent_texts(user)
            assert len(sent) == 1 and texts.ERROR not in sent, (user, sent)
    assert "6222 0212" not in logs.text and "用户30" not in logs.text


async def test_getme_through_a_failing_proxy_is_fatal_with_a_one_line_reason(tmp_path):
    from bot.app.runner import TransportStartError

    async with FakeBotAPI() as fake:
        fake.fail("getMe", status=502, times=100)
        settings = make_settings(tmp_path, fake)
        services = await make_services(settings)
        try:
            with pytest.raises(TransportStartError) as info:
                await run_telegram(services, settings, asyncio.Event(), options=TEST_OPTIONS, session=_session(fake))
        finally:
            await services.aclose()
    message = str(info.value)
    assert message == (
        "cannot reach the Telegram Bot API (getMe failed: UnreadableResponse, HTTP 502); "
        "check TELEGRAM_API_URL and the network"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__  # nothing chained to print
    assert len(fake.calls_to("getMe")) == 1 + TEST_OPTIONS.retry_attempts and not fake.calls_to("getUpdates")


@pytest.mark.load
def test_a_refused_token_ends_faqbot_run_with_one_line_and_no_traceback(tmp_path):
    asyncio.run(_refused_token(tmp_path))


async def _refused_token(tmp_path: Path) -> None:
    async with FakeBotAPI() as fake:
        token = "42:AAWrongTokenWrongTokenWrongToken12345"
        env = clean_environ() | {
            "TELEGRAM_API_URL": fake.base_url,
            "TELEGRAM_BOT_TOKEN": token,
            "FAQBOT_DB": str(tmp_path / "run.db"),
            "FAQBOT_SECRET": "x" * 32,
        }
        proc = await faqbot_async("run", env=env, cwd=tmp_path)
    stderr = proc.stderr
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    [line] = [ln for ln in stderr.splitlines() if "ERROR" in ln]
    assert line.endswith(
        "transport telegram cannot start: Telegram refused the bot token "
        "(getMe: 401 Unauthorized); check TELEGRAM_BOT_TOKEN"
    )
    assert token not in stderr and token.split(":", 1)[1] not in stderr


async def test_an_unreadable_answer_to_the_typing_indicator_does_not_break_the_answer(tmp_path, logs):
    async with FakeBotAPI() as fake:
        fake.undecodable("sendChatAction", times=100)
        llm = ScriptedFallback([], "慢慢地回答完了。", delay=0.8)  # slow enough for the typing indicator to fire
        async with Bot(fake, tmp_path, llm=llm):
            await fake.wait_for("getUpdates", timeout=15)
            fake.push_message(NONE_Q)
            await fake.wait_for("sendChatAction", timeout=15)
            await fake.wait_for(lambda c: c.method == "sendMessage" and not c.failed, timeout=15)
        assert fake.sent_texts(1001) == ["慢慢地回答完了。"]
    assert "handling update" not in logs.text  # nothing reached the error handler
