"""Cross-cutting work, kept out of the handlers.

* `RetryRequestMiddleware` (outgoing, on the bot session): retries Bot API calls refused by flood control (429,
  after ``retry_after``, capped) or lost to a 5xx / proxy error page / network error, a bounded number of times,
  without ever sending a message twice.
* `InFlightMiddleware` (outer, every update): tracks the tasks handling updates, so shutdown can wait for them,
  and remembers the last update id (to confirm it to Telegram on shutdown).
* `ThrottlingMiddleware` (inner, messages and button taps): more than N events in T seconds from one user ->
  one polite notice, then the user is ignored for a while.
* `AnswerLockMiddleware` (inner, question handlers flagged ``answer_lock``): one answer in the making per user;
  the user's next questions wait for it (answered in order); one arriving during an LLM generation gets
  `texts.BUSY_LLM`.
* `ConversationMiddleware` (inner): looks up the user's `Conversation` and hands it to the handler as ``conv``.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import aiohttp
from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.dispatcher.flags import get_flag
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import CallbackQuery, Message, TelegramObject, Update
from cachetools import TTLCache

from bot.answering import texts
from bot.telegram.conversations import ConversationStore

log = logging.getLogger("faqbot.telegram")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]

# Never retried here: the polling loop has its own backoff; a draft is a disposable preview (the next one or the
# final message supersedes it), and waiting out a 429 would hold up the answer behind it.
_NEVER_RETRIED = frozenset({"getUpdates", "sendMessageDraft"})
# Cosmetic: a failure is logged and reported as success, so that neither a retry nor an exception can delay or
# break the answer (TypingIndicator waits for its last action when the answer is done).
_BEST_EFFORT = frozenset({"sendChatAction"})

# What a Bot API call can raise: Telegram's errors, and an answer the client could not read (not a TelegramAPIError).
BOT_API_ERRORS = (TelegramAPIError, ClientDecodeError)

_retries = contextvars.ContextVar("faqbot_telegram_retries", default=True)


@contextlib.contextmanager
def no_retries() -> Iterator[None]:
    """Calls made inside fail at once instead of being retried (used for previews of an answer)."""
    token = _retries.set(False)
    try:
        yield
    finally:
        _retries.reset(token)


def creates_message(api_method: str) -> bool:
    """True for calls that post something new (sending twice would show it twice)."""
    return api_method.startswith(("send", "forward", "copy")) and api_method not in ("sendChatAction",
                                                                                     "sendMessageDraft")


def surely_not_delivered(exc: BaseException) -> bool:
    """The failure proves Telegram did not act on the request (so even a sendMessage may be repeated)."""
    if isinstance(exc, TelegramRetryAfter):
        return True
    if isinstance(exc, TelegramServerError):  # Telegram's own JSON error: the request was refused
        return True
    if isinstance(exc, ClientDecodeError):
        # An answer the client could not read. Only its HTTP status tells what happened (`BotSession` records it):
        # 502/503 pages come from a proxy that did not get an answer from the Bot API (the Bot API itself always
        # answers JSON); 504 means it waited and gave up (maybe carried out); 200 means it WAS carried out. No
        # status (another session class): nothing is proven.
        return getattr(exc, "status_code", None) in (502, 503)
    if isinstance(exc, TelegramNetworkError):
        # Only a connection that was never established proves nothing was sent.
        return isinstance(exc.__cause__, aiohttp.ClientConnectorError)
    return False


class DeliveryRecord:
    """Whether handling one update has (or may have) shown the user a message; the error handler reads it."""

    __slots__ = ("maybe_shown",)

    def __init__(self) -> None:
        self.maybe_shown = False


_delivery: contextvars.ContextVar[DeliveryRecord | None] = contextvars.ContextVar("faqbot_delivery", default=None)


class KeepResponseTypes(BaseRequestMiddleware):
    """Hold a strong reference to ``Response[T]`` for every Bot API result type ``T`` the bot has used.

    aiogram parses each answer with ``Response[method.__returning__]``. Pydantic caches parametrized generic
    models only weakly, and a model class sits in reference cycles, so each garbage collection frees it and the
    next call builds it again: ~5 ms of pydantic schema building, several times a second under load (found with
    py-spy under `make bench`; about 6 % of the bot's CPU per message). Holding one reference per result type
    (a dozen or so) keeps pydantic's own cache warm.
    """

    def __init__(self) -> None:
        self.kept: dict[Any, type] = {}

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        returning = method.__returning__
        if returning not in self.kept:
            self.kept[returning] = Response[returning]  # type: ignore[valid-type]
        return await make_request(bot, method)


class RetryRequestMiddleware(BaseRequestMiddleware):
    """Retry failed Bot API calls: 429 after ``retry_after`` (capped), 5xx / decode / network errors with backoff.

    A call that creates a message is repeated only when the failure proves the first try was not delivered
    (429, Telegram's 5xx answer, a 502/503 page from a proxy, a refused connection); after an ambiguous failure
    (timeout, connection dropped mid-request, 504) or an unreadable answer to a request that was carried out
    (HTTP 200) it is not repeated, so no answer is ever shown twice. Such calls also mark the update's
    `DeliveryRecord`: the user may have seen something, so no apology follows.
    """

    def __init__(self, attempts: int = 3, retry_after_cap: float = 30.0, backoff: float = 0.5) -> None:
        self.attempts = attempts
        self.retry_after_cap = retry_after_cap
        self.backoff = backoff
        self.retries = 0  # total retries made (for tests and diagnostics)

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        if not creates_message(name):
            return await self._call(make_request, bot, method, name)
        record = _delivery.get()
        try:
            response = await self._call(make_request, bot, method, name)
        except Exception as exc:
            if record is not None and not surely_not_delivered(exc):
                record.maybe_shown = True
            raise
        if record is not None:
            record.maybe_shown = True
        return response

    async def _call(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
        name: str,
    ) -> Response[TelegramType]:
        if name in _BEST_EFFORT:
            try:
                return await make_request(bot, method)
            except BOT_API_ERRORS as exc:
                log.debug("Bot API %s failed (%s); ignored", name, type(exc).__name__)
                return cast(Response[TelegramType], True)
        if name in _NEVER_RETRIED or not _retries.get():
            return await make_request(bot, method)
        attempt = 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt >= self.attempts:
                    raise
                delay = min(float(exc.retry_after), self.retry_after_cap)
                why = f"flood control, retry after {exc.retry_after}s"
            except (TelegramServerError, ClientDecodeError, TelegramNetworkError) as exc:
                if attempt >= self.attempts:
                    raise
                if creates_message(name) and not surely_not_delivered(exc):
                    raise
                delay = min(self.backoff * (2 ** attempt), self.retry_after_cap)
                why = type(exc).__name__
            attempt += 1
            self.retries += 1
            # Method name and error class only: never the URL (it holds the token) nor the request body.
            log.warning("Bot API %s failed (%s); retry %d/%d in %.1fs", name, why, attempt, self.attempts, delay)
            await asyncio.sleep(delay)


class InFlightMiddleware(BaseMiddleware):
    """Outer update middleware: knows which update handlers are running, and the last update id seen.

    It also gives each update a `DeliveryRecord` (``data["delivery"]``, filled in by `RetryRequestMiddleware`),
    so the error handler can tell whether the user may already have seen an answer.
    """

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.last_update_id: int | None = None
        self.handled = 0

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Update):
            if self.last_update_id is None or event.update_id > self.last_update_id:
                self.last_update_id = event.update_id
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        record = data["delivery"] = DeliveryRecord()
        token = _delivery.set(record)
        try:
            return await handler(event, data)
        finally:
            _delivery.reset(token)
            self.handled += 1
            if task is not None:
                self.tasks.discard(task)

    async def wait_idle(self, timeout: float, extra: set[asyncio.Task[Any]] | None = None) -> bool:
        """Wait until no update is being handled (or ``timeout``); True if everything finished."""
        await asyncio.sleep(0)  # let tasks created just before start and register
        me = asyncio.current_task()
        pending = {t for t in (self.tasks | (extra or set())) if t is not me and not t.done()}
        if not pending:
            return True
        done, still = await asyncio.wait(pending, timeout=timeout)
        if still:
            log.warning("%d update handler(s) still running after %.0fs; stopping anyway", len(still), timeout)
        return not still


async def _notify(event: TelegramObject, text: str) -> None:
    """Best effort: tell the user ``text`` (a reply to a message, a toast for a button)."""
    try:
        if isinstance(event, Message):
            if event.chat.type == "private":
                await event.answer(text)
            else:
                await event.reply(text)
        elif isinstance(event, CallbackQuery):
            await event.answer(text)
    except TelegramAPIError as exc:
        log.warning("could not send a notice: %s", type(exc).__name__)


class ThrottlingMiddleware(BaseMiddleware):
    """Per-user flood control for incoming messages and button taps.

    More than ``rate`` events within ``period`` seconds -> one polite notice (`texts.THROTTLED`), then the user's
    events are dropped for ``silence`` seconds. Handlers flagged ``throttle=False`` are exempt; ``"silent"``
    drops without the notice (used by group auto-answers, which the user did not address to the bot).
    Only handled events count (this is an inner middleware): group chatter the bot ignores is never counted.
    """

    def __init__(self, rate: int = 5, period: float = 10.0, silence: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, max_users: int = 50_000) -> None:
        self.rate = rate
        self.period = period
        self.silence = silence
        self.clock = clock
        # A user's recent event times, forgotten `period` after their last event; silenced users, for `silence`.
        # At most `max_users` of each: beyond it the least recently seen user is forgotten.
        self._hits: TTLCache[int, deque[float]] = TTLCache(max_users, ttl=period, timer=clock)
        self._silenced: TTLCache[int, bool] = TTLCache(max_users, ttl=silence, timer=clock)
        self.dropped = 0

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        mode = get_flag(data, "throttle", default=True)
        user = data.get("event_from_user")
        if not mode or user is None:
            return await handler(event, data)
        if user.id in self._silenced:
            self.dropped += 1
            if isinstance(event, CallbackQuery):  # stop the button's spinner, silently
                try:
                    await event.answer()
                except TelegramAPIError:
                    pass
            return None
        now = self.clock()
        hits = self._hits.get(user.id) or deque()
        hits.append(now)
        while hits and hits[0] <= now - self.period:
            hits.popleft()
        self._hits[user.id] = hits  # (re)set: kept until `period` after this event
        if len(hits) > self.rate:
            del self._hits[user.id]
            self._silenced[user.id] = True
            self.dropped += 1
            log.info("throttling a user for %.0fs", self.silence)
            if mode != "silent":
                await _notify(event, texts.THROTTLED)
            return None
        return await handler(event, data)


class _AnswerSlot:
    """The answers of one user: the one in the making and the questions queued behind it."""

    __slots__ = ("lock", "users", "question", "llm")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()  # FIFO: waiters get it in the order they asked
        self.users = 0  # handlers holding or waiting for the lock
        self.question: str | None = None  # the question being answered now (None between two answers)
        self.llm: bool | None = None  # whether that answer is an LLM generation (worked out when needed)


class AnswerLockMiddleware(BaseMiddleware):
    """One answer in the making per user; the user's next questions wait for it and are answered in order.

    Applies to handlers flagged ``answer_lock``. It keeps two answers from racing on one `Conversation` and keeps
    a user's answers in the order asked (aiogram handles every update in a task of its own). A question that
    arrives while the previous answer is an LLM generation (seconds) gets `texts.BUSY_LLM` instead of waiting:
    one generation per user at a time. So does a question beyond ``max_waiting`` queued ones.
    """

    def __init__(self, max_waiting: int = 10) -> None:
        self.max_waiting = max_waiting
        self._slots: dict[int, _AnswerSlot] = {}

    @property
    def busy(self) -> set[int]:
        """Users with an answer in the making."""
        return set(self._slots)

    @staticmethod
    def _question(event: TelegramObject, data: dict[str, Any]) -> str:
        question = data.get("question")  # group handlers: the text without the @mention
        if isinstance(question, str):
            return question
        return getattr(event, "text", None) or ""

    @staticmethod
    def _goes_to_llm(question: str | None, data: dict[str, Any]) -> bool:
        """Does the answer to ``question`` need the LLM? (The core's own offline routing, sub-millisecond.)"""
        answerer = getattr(data.get("services"), "answerer", None)
        if question is None or answerer is None or getattr(answerer, "llm", None) is None:
            return False
        try:
            return bool(answerer.wants_llm(answerer.match(question)))
        except Exception:  # the answer itself will report the problem
            return False

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = data.get("event_from_user")
        if not get_flag(data, "answer_lock") or user is None:
            return await handler(event, data)
        slot = self._slots.get(user.id)
        if slot is None:
            slot = self._slots[user.id] = _AnswerSlot()
        else:
            if slot.llm is None and slot.question is not None:
                slot.llm = self._goes_to_llm(slot.question, data)
            if slot.llm or slot.users > self.max_waiting:
                await _notify(event, texts.BUSY_LLM)
                return None
        slot.users += 1
        try:
            async with slot.lock:
                slot.question, slot.llm = self._question(event, data), None
                try:
                    return await handler(event, data)
                finally:
                    slot.question, slot.llm = None, None
        finally:
            slot.users -= 1
            if slot.users == 0 and self._slots.get(user.id) is slot:
                del self._slots[user.id]


class ConversationMiddleware(BaseMiddleware):
    """Hands the handler ``conv`` (the `Conversation` of this chat and user) and ``chat_state``."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = data.get("event_from_user")
        chat = data.get("event_chat")
        if user is not None:
            chat_id = chat.id if chat is not None else user.id
            chat_type = chat.type if chat is not None else "private"
            state = self.store.state(chat_id, chat_type, user.id)
            data["chat_state"] = state
            data["conv"] = state.conv
        return await handler(event, data)
