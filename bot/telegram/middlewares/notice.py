"""What the incoming-update middlewares share: the handler type, and a best-effort notice to the user."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, Message, TelegramObject

log = logging.getLogger("faqbot.telegram")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


async def notify(event: TelegramObject, text: str) -> None:
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
