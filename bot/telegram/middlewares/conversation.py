"""Incoming (inner): `ConversationMiddleware` looks up the user's `Conversation` and hands it to the handler as
``conv`` (with ``chat_state``)."""

from __future__ import annotations

from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject

from bot.telegram.conversations import ConversationStore
from bot.telegram.middlewares.notice import Handler


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
