"""Tell the asker, Telegram side: the 有答案时通知我 button and the follow-up messages after a reload.

The button sits under out-of-scope answers and the "none of these" acknowledgement, in private chats only. A press
stores the chat id (``storage.subscriptions``) after checking that the turn belongs to the person pressing (its
logged user pseudonym must be theirs: callback data can be forged). ``deliver_follow_ups`` runs after an admin's
``/reload`` and when the bot starts (a restart is a reload too).
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.answering import texts
from bot.answering.follow_ups import follow_up
from bot.app.services import Services
from bot.curation.suggest import turn_owner_and_question
from bot.telegram.conversations import ChatState
from bot.telegram.filters import inline
from bot.telegram.keyboards import NotifyCB
from storage import subscriptions

log = logging.getLogger("faqbot.telegram")

CHANNEL = "telegram"


async def on_notify(
    callback: CallbackQuery, callback_data: NotifyCB, services: Services, chat_state: ChatState
) -> None:
    log_ = services.turn_log
    msg = callback.message
    if log_ is None or not isinstance(msg, Message):
        await callback.answer(texts.NOTIFY_UNAVAILABLE)
        return
    try:
        await log_.flush(timeout=2.0)  # the answer may have been logged a moment ago
    except Exception as exc:
        log.info("log flush before a notify request failed: %s", type(exc).__name__)
    found = await asyncio.to_thread(turn_owner_and_question, services.settings.db, callback_data.turn)
    if found is None or found[0] != log_.pseudonym(str(callback.from_user.id)) or not (found[1] or "").strip():
        await callback.answer(texts.STALE_BUTTON)  # someone else's turn, or unknown: as for any forged button
        return
    new = await asyncio.to_thread(
        subscriptions.subscribe,
        subscriptions.path_for(services.settings.db),
        channel=CHANNEL,
        chat_id=str(msg.chat.id),
        turn_id=callback_data.turn,
        question=found[1].strip(),
        traditional=chat_state.traditional,
    )
    await callback.answer(texts.NOTIFY_OK if new else texts.NOTIFY_ALREADY)
    try:  # one press is enough: take the button away
        rows = [
            row
            for row in (msg.reply_markup.inline_keyboard if msg.reply_markup else [])
            if not any((b.callback_data or "").startswith(NotifyCB.__prefix__ + ":") for b in row)
        ]
        await msg.edit_reply_markup(reply_markup=InlineKeyboardMarkup(inline_keyboard=rows) if rows else None)
    except TelegramBadRequest as exc:
        log.debug("could not remove the notify button: %s", exc.message)


async def deliver_follow_ups(bot: Bot, services: Services) -> dict[str, int]:
    """Send the answers that now exist to those who asked to be told (Telegram requests only)."""

    async def send(chat_id: str, text: str) -> None:
        await bot.send_message(chat_id=int(chat_id), text=text)

    return await follow_up(services.answerer, services.settings.db, CHANNEL, send)


def notify_router() -> Router:
    r = Router(name="notify")
    r.callback_query.register(on_notify, NotifyCB.filter(), inline(F.message.chat.type == ChatType.PRIVATE))
    return r
