"""Outgoing (bot session): `RetryRequestMiddleware` retries Bot API calls refused by flood control (429, after
``retry_after``, capped) or lost to a 5xx / proxy error page / network error, a bounded number of times, without
ever sending a message twice."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import ClientDecodeError, TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

from bot.telegram.middlewares.delivery import (
    BOT_API_ERRORS,
    creates_message,
    current_record,
    retries_allowed,
    surely_not_delivered,
)

log = logging.getLogger("faqbot.telegram")

# Never retried here: the polling loop has its own backoff; a draft is a disposable preview (the next one or the
# final message supersedes it), and waiting out a 429 would hold up the answer behind it.
_NEVER_RETRIED = frozenset({"getUpdates", "sendMessageDraft"})
# Cosmetic: a failure is logged and reported as success, so that neither a retry nor an exception can delay or
# break the answer (TypingIndicator waits for its last action when the answer is done).
_BEST_EFFORT = frozenset({"sendChatAction"})


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
        record = current_record()
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
        if name in _NEVER_RETRIED or not retries_allowed():
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
                delay = min(self.backoff * (2**attempt), self.retry_after_cap)
                why = type(exc).__name__
            attempt += 1
            self.retries += 1
            # Method name and error class only: never the URL (it holds the token) nor the request body.
            log.warning("Bot API %s failed (%s); retry %d/%d in %.1fs", name, why, attempt, self.attempts, delay)
            await asyncio.sleep(delay)
