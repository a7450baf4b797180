"""Inline keyboards and their callback data (aiogram `CallbackData` factories, 64-byte limit).

Callback data is untrusted input: a client can send any string. Every factory constrains its fields, so forged
or malformed data fails to unpack, matches no handler and ends in the polite catch-all in `handlers.py`.
"""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder
from pydantic import Field

from bot.answering import texts
from bot.answering.follow_ups import offers_notify
from bot.answering.types import NOT_A_QUESTION, Candidate, FeedbackKind, Reply, Route
from knowledge.loader import KnowledgeBase

TurnId = Annotated[str, Field(pattern=r"^[0-9a-f]{8,32}$")]  # Reply.turn_id: 16 hex digits
FaqId = Annotated[str, Field(pattern=r"^[a-z0-9_]{2,40}$")]  # knowledge.loader.ID_RE

# Replies that are not answers to rate: small talk, empty input, the acknowledgement of "none of these", errors.


class FeedbackCB(CallbackData, prefix="fb"):
    """👍 / 👎 under an answer."""

    turn: TurnId
    kind: Literal[FeedbackKind.UP, FeedbackKind.DOWN]


class TopicCB(CallbackData, prefix="tp"):
    """A topic button (/start, /faq, related questions): shows the curated answer of one entry."""

    faq: FaqId


class ChoiceCB(CallbackData, prefix="ch"):
    """One of the candidate questions offered by a clarify answer."""

    turn: TurnId
    faq: FaqId


class NoneCB(CallbackData, prefix="no"):
    """都不是 under a clarify answer: logged as feedback 'none' on that turn."""

    turn: TurnId


class NotifyCB(CallbackData, prefix="nt"):
    """有答案时通知我 under an out-of-scope answer or the "none of these" acknowledgement (private chats)."""

    turn: TurnId


def notify_row(turn_id: str, traditional: bool = False) -> list[InlineKeyboardButton]:
    label = texts.NOTIFY_BUTTON
    if traditional:
        from knowledge.normalize import to_traditional

        label = to_traditional(label)
    return [InlineKeyboardButton(text=label, callback_data=_data(NotifyCB, turn_id))]


def _label(c: Candidate, traditional: bool) -> str:
    if traditional:
        from knowledge.normalize import to_traditional

        return to_traditional(c.question)
    return c.question


def _data(factory: type[CallbackData], *values: str) -> str:
    """``factory(**fields).pack()`` for values the bot made itself (turn ids, entry ids: they already fit the
    fields' patterns), without building and validating a pydantic model per button on every answer. Taps are
    still unpacked by the factories, which is where untrusted data is checked."""
    return factory.__separator__.join((factory.__prefix__, *values))


@functools.lru_cache(maxsize=1024)
def _topic_button(faq_id: str, label: str) -> InlineKeyboardButton:
    # The same few buttons under many answers: build each once (never mutated after).
    return InlineKeyboardButton(text=label, callback_data=_data(TopicCB, faq_id))


def wants_feedback(reply: Reply) -> bool:
    return not reply.error and reply.reason not in NOT_A_QUESTION


def answer_keyboard(reply: Reply, *, notify: bool = False) -> InlineKeyboardMarkup | None:
    """Buttons under an answer: clarify choices + 都不是, or related topics; 有答案时通知我 (``notify``, for an
    out-of-scope answer); then 👍 / 👎."""
    # Rows are built directly: InlineKeyboardBuilder deep-copies its buttons, a cost paid on every answer.
    rows: list[list[InlineKeyboardButton]] = []
    turn = str(reply.turn_id)
    if reply.route is Route.CLARIFY and reply.choices:
        for c in reply.choices:
            rows.append(
                [InlineKeyboardButton(text=_label(c, reply.traditional), callback_data=_data(ChoiceCB, turn, c.faq_id))]
            )
        rows.append([InlineKeyboardButton(text=texts.NONE_OF_THESE, callback_data=_data(NoneCB, turn))])
    elif reply.choices:
        for c in reply.choices:
            rows.append([_topic_button(c.faq_id, _label(c, reply.traditional))])
    if notify and offers_notify(reply):
        rows.append(notify_row(turn, reply.traditional))
    if wants_feedback(reply):
        rows.append(
            [
                InlineKeyboardButton(text=texts.TG_THUMBS_UP, callback_data=_data(FeedbackCB, turn, FeedbackKind.UP)),
                InlineKeyboardButton(
                    text=texts.TG_THUMBS_DOWN, callback_data=_data(FeedbackCB, turn, FeedbackKind.DOWN)
                ),
            ]
        )
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def without_feedback_row(markup: InlineKeyboardMarkup | None) -> InlineKeyboardMarkup | None:
    """The same keyboard minus the 👍 / 👎 row (after the user has voted)."""
    if markup is None:
        return None
    rows = [
        row
        for row in markup.inline_keyboard
        if not any((btn.callback_data or "").startswith(FeedbackCB.__prefix__ + ":") for btn in row)
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def topics_keyboard(kb: KnowledgeBase, *, columns: int = 2, full_questions: bool = False) -> InlineKeyboardMarkup:
    """One button per FAQ entry: short titles in ``columns`` columns, or the full questions one per row."""
    b = InlineKeyboardBuilder()
    for e in kb.entries:
        b.button(text=e.question if full_questions else e.title, callback_data=TopicCB(faq=e.id))
    b.adjust(1 if full_questions else columns)
    return b.as_markup()
