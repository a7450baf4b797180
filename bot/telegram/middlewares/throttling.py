"""Incoming (inner, messages and button taps): `ThrottlingMiddleware` -- more than N events in T seconds from one
user get one polite notice, then the user is ignored for a while."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, TelegramObject
from cachetools import TTLCache

from bot.answering import texts
from bot.telegram.middlewares.notice import Handler, notify

log = logging.getLogger("faqbot.telegram")


class ThrottlingMiddleware(BaseMiddleware):
    """Per-user flood control for incoming messages and button taps.

    More than ``rate`` events within ``period`` seconds -> one polite notice (`texts.THROTTLED`), then the user's
    events are dropped for ``silence`` seconds. Handlers flagged ``throttle=False`` are exempt; ``"silent"``
    drops without the notice (used by group auto-answers, which the user did not address to the bot).
    Only handled events count (this is an inner middleware): group chatter the bot ignores is never counted.
    """

    def __init__(
        self,
        rate: int = 5,
        period: float = 10.0,
        silence: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        max_users: int = 50_000,
    ) -> None:
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
                await notify(event, texts.THROTTLED)
            return None
        return await handler(event, data)
