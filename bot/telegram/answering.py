"""Showing an answer in a chat: typing indicator, LLM previews (drafts or a throttled placeholder), final message.

Private chats stream a preview with ``sendMessageDraft`` and then send the verified answer with ``sendMessage``
(the draft disappears). Groups get a placeholder message (a reply to the question) edited at most every
``edit_interval`` seconds and only when its text changed; the verified answer then replaces it. A preview is
never the answer: if the guard rejects the LLM text, the final edit shows only the safe fallback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.types import InlineKeyboardMarkup, Message, ReplyParameters
from aiogram.utils.formatting import Text

from bot.answering import texts
from bot.answering.answerer import Answerer
from bot.answering.types import Conversation, Draft, Reply
from bot.telegram.conversations import ChatState
from bot.telegram.keyboards import answer_keyboard
from bot.telegram.middlewares.delivery import BOT_API_ERRORS, no_retries
from bot.telegram.options import TelegramOptions
from bot.telegram.render import preview_text, reply_texts

log = logging.getLogger("faqbot.telegram")


@dataclass(frozen=True)
class Target:
    """Where an answer goes."""

    chat_id: int
    chat_type: str
    thread_id: int | None = None  # forum topic (or private thread) of the question
    reply_to: int | None = None  # message id to reply to (groups: the asker's message)

    @property
    def private(self) -> bool:
        return self.chat_type == "private"

    @classmethod
    def for_message(cls, message: Message, *, reply: bool | None = None) -> Target:
        """Answer ``message``: as a reply in groups (or when ``reply`` says so), in its forum topic."""
        private = message.chat.type == "private"
        if reply is None:
            reply = not private
        return cls(
            chat_id=message.chat.id,
            chat_type=message.chat.type,
            thread_id=message.message_thread_id if message.is_topic_message else None,
            reply_to=message.message_id if reply else None,
        )


async def send_texts(
    bot: Bot,
    target: Target,
    parts: list[Text],
    markup: InlineKeyboardMarkup | None = None,
    *,
    first: Message | None = None,
) -> list[Message]:
    """Send ``parts`` as consecutive messages; the keyboard goes under the last one. In groups each part replies
    to the question (so the asker's buttons can be told apart). ``first``: already-sent message standing for part 0.
    """
    sent: list[Message] = [first] if first is not None else []
    for i, part in enumerate(parts):
        if i == 0 and first is not None:
            continue
        last = i == len(parts) - 1
        reply_params = None
        if target.reply_to is not None and (i == 0 or not target.private):
            reply_params = ReplyParameters(message_id=target.reply_to, allow_sending_without_reply=True)
        msg = await bot.send_message(
            chat_id=target.chat_id,
            message_thread_id=target.thread_id,
            reply_parameters=reply_params,
            reply_markup=markup if last else None,
            **part.as_kwargs(),
        )
        sent.append(msg)
    return sent


class TypingIndicator:
    """ "typing…" in the chat while an answer takes longer than ``delay`` seconds, repeated every ``interval``
    (Telegram shows it for about 5 s).

    Does what aiogram's ``ChatActionSender.typing(initial_sleep=delay)`` does, but that starts a task and a
    timeout for every answer, and most answers here are curated ones that take well under a millisecond; this
    only sets a timer, and starts the task when the timer fires. As there, an action already on its way when
    the answer is done is waited for, so "typing…" cannot arrive after the answer and linger under it.
    """

    def __init__(self, bot: Bot, chat_id: int, thread_id: int | None, *, delay: float, interval: float = 5.0):
        self.bot, self.chat_id, self.thread_id = bot, chat_id, thread_id
        self.delay, self.interval = delay, interval
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._sending = False
        self._done = False

    async def __aenter__(self) -> TypingIndicator:
        self._timer = asyncio.get_running_loop().call_later(self.delay, self._start)
        return self

    def _start(self) -> None:
        if not self._done:
            self._task = asyncio.create_task(self._worker(), name="faqbot-typing")

    async def _worker(self) -> None:
        while not self._done:
            self._sending = True
            try:
                await self.bot.send_chat_action(chat_id=self.chat_id, action="typing", message_thread_id=self.thread_id)
            except Exception as exc:  # cosmetic: never let it touch the answer
                log.debug("typing indicator failed: %s", type(exc).__name__)
            finally:
                self._sending = False
            if self._done:
                return
            await asyncio.sleep(self.interval)

    async def __aexit__(self, *exc_info: Any) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        task = self._task
        if task is not None:
            if not self._sending:
                task.cancel()
            await asyncio.wait([task])  # an action in flight finishes first; never raises


class AnswerPresenter:
    """Shows the Drafts and the final Reply of one answer in one chat."""

    def __init__(self, bot: Bot, target: Target, options: TelegramOptions, *, clock=time.monotonic) -> None:
        self.bot = bot
        self.target = target
        self.options = options
        self.clock = clock
        self.use_drafts = target.private
        self._draft_id = 0  # drawn on the first draft: most answers never show one
        self.placeholder: Message | None = None
        self.shown = ""  # preview text currently displayed
        self.last_update = float("-inf")
        self.paused_until = float("-inf")
        self.drafts_sent = 0
        self.edits = 0

    @property
    def draft_id(self) -> int:
        if not self._draft_id:
            self._draft_id = secrets.randbelow(2**31 - 1) + 1  # non-zero; one per answer
        return self._draft_id

    async def draft(self, text: str) -> None:
        """Show a partial text. Best effort: previews are never retried and never stop the answer."""
        now = self.clock()
        if now < self.paused_until:
            return
        try:
            with no_retries():
                await self._draft(text, now)
        except TelegramRetryAfter as exc:  # flood control: no previews for a while; the final answer is retried
            self.paused_until = now + exc.retry_after
            log.info("previews paused for %ss (flood control)", exc.retry_after)
        except BOT_API_ERRORS as exc:
            log.warning("could not show a preview: %s", type(exc).__name__)

    async def _draft(self, text: str, now: float) -> None:
        if self.use_drafts:
            preview = preview_text(text)
            if not preview or preview == self.shown or now - self.last_update < self.options.draft_interval:
                return
            try:
                await self.bot.send_message_draft(
                    chat_id=self.target.chat_id,
                    draft_id=self.draft_id,
                    text=preview,
                    message_thread_id=self.target.thread_id,
                )
            except TelegramBadRequest as exc:  # e.g. a client or server without drafts: use a placeholder
                log.info("sendMessageDraft refused (%s); editing a placeholder instead", exc.message)
                self.use_drafts = False
                self.last_update = float("-inf")
                self.shown = ""
            else:
                self.shown, self.last_update = preview, now
                self.drafts_sent += 1
                return
        preview = preview_text(text, marker=texts.TG_GENERATING)
        if preview == self.shown:
            return
        if self.placeholder is None:
            [self.placeholder] = await send_texts(self.bot, self.target, [Text(preview)])
            self.shown, self.last_update = preview, now
            return
        if now - self.last_update < self.options.edit_interval:
            return
        self.shown, self.last_update = preview, now
        try:
            await self.bot.edit_message_text(
                chat_id=self.target.chat_id, message_id=self.placeholder.message_id, **Text(preview).as_kwargs()
            )
        except TelegramBadRequest as exc:
            log.debug("preview edit refused: %s", exc.message)
        else:
            self.edits += 1

    async def final(self, reply: Reply) -> list[Message]:
        parts = reply_texts(reply)
        # 有答案时通知我 only in private chats: a follow-up weeks later belongs to the asker, not to a group.
        markup = answer_keyboard(reply, notify=self.target.private and self.options.notify_offer)
        first: Message | None = None
        if self.placeholder is not None:
            try:
                edited = await self.bot.edit_message_text(
                    chat_id=self.target.chat_id,
                    message_id=self.placeholder.message_id,
                    reply_markup=markup if len(parts) == 1 else None,
                    **parts[0].as_kwargs(),
                )
                first = edited if isinstance(edited, Message) else self.placeholder
            except TelegramBadRequest as exc:
                if "not modified" in exc.message:
                    first = self.placeholder
                else:  # the placeholder is gone: post the answer anew
                    log.info("could not replace the preview (%s); sending the answer as a new message", exc.message)
        return await send_texts(self.bot, self.target, parts, markup, first=first)


async def deliver(bot: Bot, target: Target, reply: Reply) -> list[Message]:
    """Send a finished reply (no previews): curated answers from buttons, admin texts etc."""
    return await AnswerPresenter(bot, target, TelegramOptions()).final(reply)


async def answer_question(
    *,
    bot: Bot,
    answerer: Answerer,
    question: str,
    conv: Conversation,
    target: Target,
    options: TelegramOptions,
    chat_state: ChatState | None = None,
    via: str = "text",
) -> Reply | None:
    """Run the core on ``question`` and show the result in ``target``; returns the final Reply."""
    presenter = AnswerPresenter(bot, target, options)
    final: Reply | None = None
    async with TypingIndicator(bot, target.chat_id, target.thread_id, delay=options.typing_delay):
        async for event in answerer.stream(question, conv, via=via):
            if isinstance(event, Draft):
                await presenter.draft(event.text)
            else:
                final = event
    if final is None:  # the core always ends with a Reply; be defensive anyway
        return None
    if chat_state is not None:
        chat_state.traditional = final.traditional
    try:
        await presenter.final(final)
    except TelegramForbiddenError:
        log.info("the user blocked the bot or left the chat; answer not delivered")
    except TelegramBadRequest:
        log.exception("Telegram rejected the answer message")
    except BOT_API_ERRORS as exc:
        # Retries are exhausted, or the failure was ambiguous (the message may have been posted): do not send
        # anything more, so the user never sees an answer twice or an error after an answer.
        log.warning("answer delivery failed (%s); the turn is logged, the message may be missing", type(exc).__name__)
    return final
