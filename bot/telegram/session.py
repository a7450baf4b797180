"""The HTTP session the bot talks to the Bot API with: aiogram's aiohttp session that remembers the HTTP status of
an answer it could not read.

aiogram raises ``ClientDecodeError`` for any body it cannot turn into a ``Response`` -- a proxy's HTML error page
(the request never reached Telegram) as well as an HTTP 200 ``"ok": true`` answer it fails to parse (the request
WAS carried out: a version skew, an emulator, a proxy that rewrites bodies). The exception does not say which;
the status code does. `UnreadableResponse` is that exception with ``status_code`` added, so the retry logic can
tell "not delivered" from "delivered, but unreadable".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import ClientDecodeError
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

if TYPE_CHECKING:
    from aiogram import Bot

__all__ = ["BotSession", "UnreadableResponse"]


class UnreadableResponse(ClientDecodeError):
    """A ``ClientDecodeError`` that knows the HTTP status of the answer it could not read."""

    def __init__(self, message: str, original: Exception, data: object, status_code: int) -> None:
        super().__init__(message, original, data)
        self.status_code = status_code


class BotSession(AiohttpSession):
    """``AiohttpSession`` whose unreadable answers raise `UnreadableResponse` (with the HTTP status)."""

    def check_response(
        self, bot: Bot, method: TelegramMethod[TelegramType], status_code: int, content: str
    ) -> Response[TelegramType]:
        try:
            return super().check_response(bot, method, status_code, content)
        except ClientDecodeError as exc:
            raise UnreadableResponse(exc.message, exc.original, exc.data, status_code) from exc.original
