"""Shared set-up for the Telegram adapter tests: a FakeBotAPI, a real aiogram Bot and Dispatcher built by the
adapter's own factories, the real answering core and a real SQLite conversation log in a temporary folder."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.telegram import TelegramAPIServer

from bot.answering.answerer import Answerer
from bot.answering.types import Conversation, Draft, Reply, Route
from bot.app.services import Services
from bot.app.settings import Settings
from bot.telegram.app import build_dispatcher, create_bot
from bot.telegram.options import TelegramOptions
from knowledge.loader import KnowledgeBase, load_knowledge
from storage.writer import TurnLog
from tests.fakes.telegram_api import Call, FakeBotAPI, LoopbackSession

FAQ_Q = "社保卡丢了怎么办"  # -> faq lost_reissue
CLARIFY_Q = "电子社保卡"  # -> clarify (apply / intro / ...)
NONE_Q = "今天天气怎么样"  # -> none
SECRET = b"telegram-tests-secret-0123456789"

# Fast, deterministic values for tests (production uses the defaults).
TEST_OPTIONS = TelegramOptions(
    retry_after_cap=5.0,
    retry_backoff=0.05,
    edit_interval=0.3,
    draft_interval=0.05,
    typing_delay=0.3,
    polling_timeout=1,
    drain_timeout=10.0,
)

_KB: KnowledgeBase | None = None


def knowledge() -> KnowledgeBase:
    """The built-in knowledge, loaded once per test session (it is immutable)."""
    global _KB
    if _KB is None:
        _KB = load_knowledge(Settings(_env_file=None).knowledge_dir)
    return _KB


def make_settings(tmp_path: Path, fake: FakeBotAPI | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"db": tmp_path / "faqbot.db", "secret": SECRET.decode()}
    if fake is not None:
        values.update(telegram_bot_token=fake.token, telegram_api_url=fake.base_url)
    values.update(overrides)
    return Settings(_env_file=None, **values)


class ScriptedFallback:
    """A stand-in for the LLM fallback (the core's `Fallback` protocol): yields the given drafts, ``delay`` apart,
    then the base reply re-routed to ``llm`` with ``final`` as its text (or the guard's fallback)."""

    def __init__(
        self,
        drafts: list[str],
        final: str,
        *,
        delay: float = 0.05,
        guard: str = "pass",
        hold: asyncio.Event | None = None,
    ) -> None:
        self.drafts = drafts
        self.final = final
        self.delay = delay
        self.guard = guard
        self.hold = hold  # when given, the final reply waits for it
        self.calls = 0
        self.started = asyncio.Event()

    async def stream(self, base: Reply, conv: Conversation) -> AsyncIterator[Draft | Reply]:
        self.calls += 1
        self.started.set()
        for d in self.drafts:
            await asyncio.sleep(self.delay)
            yield Draft(d)
        if self.hold is not None:
            await self.hold.wait()
        await asyncio.sleep(self.delay)
        yield dataclasses.replace(
            base,
            route=Route.LLM,
            text=self.final,
            guard=self.guard,
            model="fake-model",
            llm_raw=self.drafts[-1] if self.drafts else self.final,
            choices=[],
        )


@dataclass
class TgEnv:
    fake: FakeBotAPI
    bot: Bot
    dp: Dispatcher
    services: Services
    settings: Settings
    options: TelegramOptions

    @property
    def db(self) -> Path:
        return self.settings.db

    @property
    def tg(self) -> dict[str, Any]:
        return self.dp["tg"]

    _next_update_id: int = 1

    async def feed(self, update: dict[str, Any]) -> Any:
        """Run ``update`` through the Dispatcher (middlewares, filters, handlers), as polling would."""
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
            self._next_update_id += 1
        return await self.dp.feed_raw_update(self.bot, update)

    async def ask(self, text: str, **kw: Any) -> dict[str, Any]:
        """Feed a text message; returns the message dict the user sent."""
        update = self.fake.message_update(text, **kw)
        await self.feed(update)
        return update["message"]

    async def press(self, data: str, message: dict[str, Any], **kw: Any) -> Call:
        """Press an inline button; returns the (last) answerCallbackQuery call it produced."""
        update = self.fake.callback_update(data, message=message, **kw)
        qid = update["callback_query"]["id"]
        await self.feed(update)
        answers = [c for c in self.fake.calls_to("answerCallbackQuery") if c.params.get("callback_query_id") == qid]
        assert answers, f"the button {data!r} was not answered"
        return answers[-1]

    def sent(self, chat_id: int | None = None) -> list[Call]:
        return self.fake.sent_messages(chat_id)

    async def flush(self) -> None:
        assert self.services.turn_log is not None
        await self.services.turn_log.flush(timeout=5)

    def query(self, sql: str, *params: Any) -> list[tuple]:
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


def buttons(call: Call) -> list[tuple[str, str]]:
    """(text, callback_data) of every inline button under a sent message."""
    markup = call.params.get("reply_markup") or {}
    return [(b["text"], b.get("callback_data", "")) for row in markup.get("inline_keyboard", []) for b in row]


def button_data(call: Call, prefix: str) -> list[str]:
    return [d for _, d in buttons(call) if d.startswith(prefix + ":")]


async def make_services(
    settings: Settings, *, llm: Any = None, kb: KnowledgeBase | None = None, with_log: bool = True
) -> Services:
    turn_log = None
    if with_log:
        turn_log = TurnLog(settings.db, secret=SECRET)
        await turn_log.start()
    answerer = Answerer(settings, kb or knowledge(), llm=llm, turn_sink=turn_log)
    return Services(settings=settings, answerer=answerer, turn_log=turn_log, llm=llm)


@contextlib.asynccontextmanager
async def tg_env(
    tmp_path: Path,
    *,
    llm: Any = None,
    kb: KnowledgeBase | None = None,
    options: TelegramOptions | None = None,
    fake_kw: dict[str, Any] | None = None,
    **settings_kw: Any,
) -> AsyncIterator[TgEnv]:
    """A FakeBotAPI + the adapter's real Bot (via `create_bot`) and Dispatcher (via `build_dispatcher`)."""
    options = options or TEST_OPTIONS
    async with FakeBotAPI(**(fake_kw or {})) as fake:
        settings = make_settings(tmp_path, fake, **settings_kw)
        services = await make_services(settings, llm=llm, kb=kb)
        bot = create_bot(settings, options, session=LoopbackSession(api=TelegramAPIServer.from_base(fake.base_url)))
        dp = build_dispatcher(services, settings, options)
        try:
            yield TgEnv(fake, bot, dp, services, settings, options)
        finally:
            await services.aclose()
            await bot.session.close()
