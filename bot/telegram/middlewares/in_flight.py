"""Incoming (outer, every update): `InFlightMiddleware` tracks the tasks handling updates, so shutdown can wait for
them, remembers the last update id (to confirm it to Telegram on shutdown) and gives each update a `DeliveryRecord`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from bot.telegram.middlewares.delivery import DeliveryRecord, recording
from bot.telegram.middlewares.notice import Handler

log = logging.getLogger("faqbot.telegram")


class InFlightMiddleware(BaseMiddleware):
    """Outer update middleware: knows which update handlers are running, and the last update id seen.

    aiogram runs each update in a task of its own (polling and webhook alike) and keeps those tasks in private sets;
    this middleware is our own record of them. A task enters it in its first step: from the task's start to here
    (``Dispatcher.feed_update`` and aiogram's own outer middlewares) nothing suspends, so once the loop has run once
    after a task was created, the task is in ``tasks`` (tests/telegram/test_run.py: shutdown waits for a polling
    and a webhook answer in flight).

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
        data["delivery"] = DeliveryRecord()
        try:
            with recording(data["delivery"]):
                return await handler(event, data)
        finally:
            self.handled += 1
            if task is not None:
                self.tasks.discard(task)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no update is being handled (or ``timeout``); True if everything finished."""
        await asyncio.sleep(0)  # let tasks created just before start and register
        me = asyncio.current_task()
        pending = {t for t in self.tasks if t is not me and not t.done()}
        if not pending:
            return True
        done, still = await asyncio.wait(pending, timeout=timeout)
        if still:
            log.warning("%d update handler(s) still running after %.0fs; stopping anyway", len(still), timeout)
        return not still
