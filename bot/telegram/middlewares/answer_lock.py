"""Incoming (inner, question handlers flagged ``answer_lock``): `AnswerLockMiddleware` -- one answer in the making per
user; the user's next questions wait for it (answered in order); one arriving during an LLM generation gets
`texts.BUSY_LLM`."""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import TelegramObject

from bot.answering import texts
from bot.telegram.middlewares.notice import Handler, notify


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
                await notify(event, texts.BUSY_LLM)
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
