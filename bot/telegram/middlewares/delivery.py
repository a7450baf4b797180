"""What a Bot API call can raise, and whether a failed one may still have shown the user something.

Shared by the outgoing side (`RetryRequestMiddleware` decides what it may repeat and marks the record) and the
incoming side (`InFlightMiddleware` gives each update a `DeliveryRecord`; the error handler reads it to decide
whether an apology is due). ``no_retries()`` turns retries off for the calls made inside it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import aiohttp
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

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


def retries_allowed() -> bool:
    """False inside ``no_retries()``."""
    return _retries.get()


def creates_message(api_method: str) -> bool:
    """True for calls that post something new (sending twice would show it twice)."""
    return api_method.startswith(("send", "forward", "copy")) and api_method not in (
        "sendChatAction",
        "sendMessageDraft",
    )


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


@contextlib.contextmanager
def recording(record: DeliveryRecord) -> Iterator[DeliveryRecord]:
    """Bot API calls made inside (by the handler of one update) mark ``record``."""
    token = _delivery.set(record)
    try:
        yield record
    finally:
        _delivery.reset(token)


def current_record() -> DeliveryRecord | None:
    """The record of the update being handled, if any."""
    return _delivery.get()
