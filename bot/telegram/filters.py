"""Cheap message checks as coroutine filters, so aiogram evaluates them in the event loop.

aiogram awaits a filter only when it is a coroutine function or a `Filter`; anything else -- a bare magic
filter such as ``F.text`` included -- runs through ``asyncio.to_thread``. For an attribute lookup that thread
hop (hand-off, wake-up, result posted back through the loop's self-pipe) costs far more than the check: a
private question passed four of them, about a quarter of the bot's CPU per message in `make bench`.
`inline(F...)` keeps magic filters' syntax and skips the hop.
"""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import Message, TelegramObject
from aiogram.utils.magic_filter import MagicFilter


class InlineMagic(Filter):
    """A magic filter resolved in the event loop."""

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: TelegramObject) -> Any:
        # The same value aiogram would test for truth (or merge, if it is a dict).
        return self.magic.resolve(event)

    def __str__(self) -> str:
        return f"inline({self.magic!r})"


def inline(magic: MagicFilter) -> InlineMagic:
    return InlineMagic(magic)


async def question_text(message: Message) -> bool:
    """Text that is not a /command. Questions are by far the most common message, so their handler is tried
    first and does not wait for every command filter to parse and reject them."""
    text = message.text
    return bool(text) and not text.lstrip().startswith("/")
