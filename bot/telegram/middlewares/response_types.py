"""Outgoing (bot session): `KeepResponseTypes` keeps pydantic's cache of Bot API response models warm."""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType


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
