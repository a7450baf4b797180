"""Routers, each built fresh by a function (a Router can belong to one Dispatcher only).

* `private_router` -- private chats: /start, /help, /faq, questions, edited questions, non-text messages.
* `group_router` -- groups and supergroups: the same, but only when the bot is addressed (a command, an
  @mention, a reply to the bot); with ``group_auto_answer`` also un-addressed messages that match an entry
  confidently.
* `callbacks_router` -- inline buttons: topics, clarify choices, 都不是, 👍 / 👎, and a polite catch-all for
  forged or stale data.
* `errors_router` -- logs any exception a handler let through and tells the user something went wrong.

Edited messages: Telegram sends an ``edited_message`` update when a user changes a message. The bot answers the
edited text as a new question (a reply to the edited message, in private chats too), and the earlier answer stays
as it was. Nothing is edited retroactively and the log gets a new turn.
"""

from __future__ import annotations

import functools
import logging
import re

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import BaseFilter, Command, CommandStart
from aiogram.types import CallbackQuery, ErrorEvent, InlineKeyboardMarkup, Message
from aiogram.utils.formatting import Text

from bot.answering import texts
from bot.answering.types import Conversation, FeedbackKind, Reason, Route
from bot.app.services import Services
from bot.app.settings import Settings
from bot.telegram.answering import Target, answer_question, deliver, send_texts
from bot.telegram.conversations import ChatState
from bot.telegram.filters import inline, question_text
from bot.telegram.keyboards import (
    ChoiceCB,
    FeedbackCB,
    NoneCB,
    TopicCB,
    notify_row,
    topics_keyboard,
    without_feedback_row,
)
from bot.telegram.middlewares.delivery import BOT_API_ERRORS, DeliveryRecord
from bot.telegram.options import TelegramOptions

log = logging.getLogger("faqbot.telegram")

GROUP_TYPES = {ChatType.GROUP, ChatType.SUPERGROUP}
PUBLIC_COMMANDS = ("start", "help", "faq")
# Content that is not text: answered with a hint to type the question (service messages are ignored).
NON_TEXT = (
    F.sticker
    | F.photo
    | F.voice
    | F.video
    | F.video_note
    | F.audio
    | F.document
    | F.animation
    | F.location
    | F.venue
    | F.contact
    | F.poll
    | F.dice
)
# Checks used on every message, as coroutine filters (see bot/telegram/filters.py).
IS_PRIVATE = inline(F.chat.type == ChatType.PRIVATE)
IN_GROUP = inline(F.chat.type.in_(GROUP_TYPES))
HAS_TEXT = inline(F.text)


def _localized(text: str, traditional: bool) -> str:
    if traditional:
        from knowledge.normalize import to_traditional

        return to_traditional(text)
    return text


# -------------------------------------------------------------------------------------------------- commands
async def cmd_start(message: Message, services: Services) -> None:
    await message.answer(texts.WELCOME, reply_markup=topics_keyboard(services.answerer.kb))


async def cmd_help(message: Message) -> None:
    await message.answer(texts.HELP)


async def cmd_faq(message: Message, services: Services) -> None:
    kb = services.answerer.kb
    await message.answer(texts.TG_FAQ_HEAD, reply_markup=topics_keyboard(kb, full_questions=True))


# -------------------------------------------------------------------------------------------------- questions
def _question_handler(*, reply: bool | None, doc: str):
    """A handler answering the message's text (or ``question``, the text with a group mention stripped); ``reply``
    as ``Target.for_message`` takes it (None: a reply in groups only). aiogram passes the arguments it names."""

    async def handler(
        message: Message,
        bot: Bot,
        services: Services,
        options: TelegramOptions,
        conv: Conversation,
        chat_state: ChatState,
        question: str | None = None,
    ) -> None:
        await answer_question(
            bot=bot,
            answerer=services.answerer,
            question=question if question is not None else (message.text or ""),
            conv=conv,
            target=Target.for_message(message, reply=reply),
            options=options,
            chat_state=chat_state,
        )

    handler.__doc__ = doc
    return handler


on_question = _question_handler(
    reply=None, doc="A question (private text, or a group message addressed to the bot with the mention stripped)."
)
on_edited_question = _question_handler(
    reply=True, doc="An edited message: answered as a new question, replying to the edited message."
)


async def on_non_text(message: Message) -> None:
    if message.chat.type == ChatType.PRIVATE:
        await message.answer(texts.NON_TEXT)
    else:
        await message.reply(texts.NON_TEXT)


async def on_group_auto(
    message: Message, bot: Bot, services: Services, options: TelegramOptions, conv: Conversation, chat_state: ChatState
) -> None:
    """Un-addressed group message (auto-answer on): answer only a confident curated match, else stay silent.

    Matching first is offline and logs nothing, so un-addressed chatter never becomes a turn in the log.
    """
    text = message.text or ""
    probe = services.answerer.match(text)
    if probe.route is not Route.FAQ or probe.reason == Reason.CHOSEN:
        return
    await answer_question(
        bot=bot,
        answerer=services.answerer,
        question=text,
        conv=conv,
        target=Target.for_message(message),
        options=options,
        chat_state=chat_state,
    )


# -------------------------------------------------------------------------------------------------- groups
class Addressed(BaseFilter):
    """A group message meant for the bot: an @mention of it, or a reply to one of its messages.

    Passes ``question`` (the text without the mention) to the handler. Commands are left to the command filters:
    in a group a ``/command`` that is not ours may be for another bot, so it is never taken as a question.
    """

    async def __call__(self, message: Message, bot: Bot) -> bool | dict[str, str]:
        text = message.text or message.caption or ""
        if text.startswith("/"):
            return False
        me = await bot.me()
        username = me.username or ""
        mentioned = bool(username) and mention_re(username).search(text) is not None
        if not mentioned:  # a "text mention" links the bot's name instead of @username (rare for bots)
            mentioned = any(
                ent.type == "text_mention" and ent.user is not None and ent.user.id == me.id
                for ent in (message.entities or message.caption_entities or [])
            )
        replied = message.reply_to_message
        to_bot = (
            replied is not None
            and replied.forum_topic_created is None  # a topic's root is not a reply
            and replied.from_user is not None
            and replied.from_user.id == me.id
        )
        if not (mentioned or to_bot):
            return False
        return {"question": strip_mention(text, username)}


_LEADING_JUNK = re.compile(r"^[\s,，:：、.。!！~～-]+")


@functools.lru_cache(maxsize=8)
def mention_re(username: str) -> re.Pattern[str]:
    """@username in any case, not followed by more username characters (@faq_bot is not @faq_bot2)."""
    return re.compile(rf"@{re.escape(username)}(?![A-Za-z0-9_])", re.IGNORECASE)


def strip_mention(text: str, username: str) -> str:
    """``text`` without @username (any case) and without leading punctuation."""
    if username:
        text = mention_re(username).sub(" ", text)
    return _LEADING_JUNK.sub("", text).strip()


# -------------------------------------------------------------------------------------------------- buttons
def _callback_target(callback: CallbackQuery, *, reply_to_question: bool) -> Target | None:
    msg = callback.message
    if msg is None:
        return None
    thread_id = None
    reply_to = None
    if isinstance(msg, Message):
        thread_id = msg.message_thread_id if msg.is_topic_message else None
        if reply_to_question and msg.chat.type != ChatType.PRIVATE and msg.reply_to_message is not None:
            reply_to = msg.reply_to_message.message_id
    return Target(chat_id=msg.chat.id, chat_type=msg.chat.type, thread_id=thread_id, reply_to=reply_to)


async def _asker_only(callback: CallbackQuery) -> bool:
    """In groups, answer buttons belong to the person who asked; True (and a notice) for anyone else."""
    msg = callback.message
    if isinstance(msg, Message) and msg.chat.type != ChatType.PRIVATE:
        asked = msg.reply_to_message
        if asked is not None and asked.from_user is not None and asked.from_user.id != callback.from_user.id:
            await callback.answer(texts.TG_NOT_YOURS, show_alert=False)
            return True
    return False


async def on_feedback(callback: CallbackQuery, callback_data: FeedbackCB, services: Services) -> None:
    if await _asker_only(callback):
        return
    services.answerer.feedback(callback_data.turn, callback_data.kind)
    thanks = texts.FEEDBACK_THANKS_UP if callback_data.kind == FeedbackKind.UP else texts.FEEDBACK_THANKS_DOWN
    await callback.answer(thanks)
    msg = callback.message
    if isinstance(msg, Message):
        try:  # one vote per answer: take the 👍 / 👎 row away
            await msg.edit_reply_markup(reply_markup=without_feedback_row(msg.reply_markup))
        except TelegramBadRequest as exc:
            log.debug("could not remove the feedback buttons: %s", exc.message)


async def _deliver_entry(
    callback: CallbackQuery,
    faq_id: str,
    *,
    via: str,
    reply_to_question: bool,
    bot: Bot,
    services: Services,
    conv: Conversation,
    chat_state: ChatState,
) -> None:
    """The curated answer of one entry for a tapped button; a stale or unknown id gets a polite notice."""
    target = _callback_target(callback, reply_to_question=reply_to_question)
    reply = services.answerer.answer_entry(faq_id, conv, via=via, traditional=chat_state.traditional)
    if reply is None or target is None:
        await callback.answer(texts.STALE_BUTTON)
        return
    await callback.answer()
    await deliver(bot, target, reply)


async def on_topic(
    callback: CallbackQuery,
    callback_data: TopicCB,
    bot: Bot,
    services: Services,
    conv: Conversation,
    chat_state: ChatState,
) -> None:
    await _deliver_entry(
        callback,
        callback_data.faq,
        via="button",
        reply_to_question=False,
        bot=bot,
        services=services,
        conv=conv,
        chat_state=chat_state,
    )


async def on_choice(
    callback: CallbackQuery,
    callback_data: ChoiceCB,
    bot: Bot,
    services: Services,
    conv: Conversation,
    chat_state: ChatState,
) -> None:
    if await _asker_only(callback):
        return
    await _deliver_entry(
        callback,
        callback_data.faq,
        via="choice",
        reply_to_question=True,
        bot=bot,
        services=services,
        conv=conv,
        chat_state=chat_state,
    )


async def on_none_of_these(
    callback: CallbackQuery,
    callback_data: NoneCB,
    bot: Bot,
    services: Services,
    conv: Conversation,
    chat_state: ChatState,
) -> None:
    if await _asker_only(callback):
        return
    services.answerer.feedback(callback_data.turn, FeedbackKind.NONE)
    conv.pending_choices = []
    await callback.answer()
    target = _callback_target(callback, reply_to_question=True)
    if target is not None:
        markup = (
            InlineKeyboardMarkup(inline_keyboard=[notify_row(callback_data.turn, chat_state.traditional)])
            if target.private
            else None
        )  # 有答案时通知我 (bot/telegram/notify.py)
        await send_texts(bot, target, [Text(_localized(texts.NONE_OF_THESE_ACK, chat_state.traditional))], markup)


async def on_unknown_callback(callback: CallbackQuery) -> None:
    """Forged, malformed or outdated callback data: a polite toast, nothing else."""
    log.info("unknown callback data ignored (%d bytes)", len(callback.data or ""))
    await callback.answer(texts.STALE_BUTTON)


# -------------------------------------------------------------------------------------------------- errors
async def on_error(event: ErrorEvent, delivery: DeliveryRecord | None = None) -> None:
    exc = event.exception
    log.error("handling update %s failed: %s", event.update.update_id, type(exc).__name__, exc_info=exc)
    if delivery is not None and delivery.maybe_shown:
        return  # the user has (or may have) seen an answer: an apology after it would only confuse
    try:
        if event.update.message is not None:
            await event.update.message.answer(texts.ERROR)
        elif event.update.edited_message is not None:
            await event.update.edited_message.answer(texts.ERROR)
        elif event.update.callback_query is not None:
            await event.update.callback_query.answer(texts.ERROR)
    except BOT_API_ERRORS:
        pass


# -------------------------------------------------------------------------------------------------- routers
def private_router() -> Router:
    r = Router(name="private")
    r.message.filter(IS_PRIVATE)
    r.edited_message.filter(IS_PRIVATE)
    r.message.register(on_question, question_text, flags={"answer_lock": True})
    r.message.register(cmd_start, CommandStart())
    r.message.register(cmd_help, Command("help"))
    r.message.register(cmd_faq, Command("faq"))
    # Unknown commands get the ordinary answer (e.g. "out of scope").
    r.message.register(on_question, HAS_TEXT, flags={"answer_lock": True})
    r.edited_message.register(on_edited_question, HAS_TEXT, flags={"answer_lock": True})
    r.message.register(on_non_text, inline(NON_TEXT))
    return r


def group_router(settings: Settings) -> Router:
    r = Router(name="group")
    r.message.filter(IN_GROUP)
    r.edited_message.filter(IN_GROUP)
    r.message.register(on_question, HAS_TEXT, Addressed(), flags={"answer_lock": True})  # never a /command
    r.message.register(cmd_start, CommandStart())
    r.message.register(cmd_help, Command("help"))
    r.message.register(cmd_faq, Command("faq"))
    r.edited_message.register(on_edited_question, HAS_TEXT, Addressed(), flags={"answer_lock": True})
    r.message.register(on_non_text, inline(NON_TEXT), Addressed())
    if settings.group_auto_answer:
        # No answer lock here: a busy notice would go to someone who did not talk to the bot, and a curated
        # answer is immediate anyway.
        r.message.register(on_group_auto, inline(F.text & ~F.text.startswith("/")), flags={"throttle": "silent"})
    return r


def callbacks_router() -> Router:
    r = Router(name="callbacks")
    r.callback_query.register(on_feedback, FeedbackCB.filter())
    r.callback_query.register(on_topic, TopicCB.filter())
    r.callback_query.register(on_choice, ChoiceCB.filter())
    r.callback_query.register(on_none_of_these, NoneCB.filter())
    r.callback_query.register(on_unknown_callback)
    return r


def errors_router() -> Router:
    r = Router(name="errors")
    r.errors.register(on_error)
    return r
