"""Curating the gap inbox from Telegram (admins in ``FAQBOT_ADMIN_IDS``, private chat with the bot only).

``/gaps`` lists the top clusters of the gap inbox with one button each. Opening a cluster shows its questions and
the nearest entry, with buttons to mark every open turn of the cluster: should be entry X (the nearest one, or any
entry from a list), needs a new entry, out of scope. Replying to the cluster's message with a text makes that text
the answer of a *draft* entry (``knowledge/drafts/``, never served) built from the cluster's questions; ``faqbot
knowledge approve ID`` publishes it. Verdicts are stored as reviews by ``telegram:<admin user id>``.

What an admin opened is kept in memory per admin (the last ``/gaps`` listing, identified by a random token in the
buttons), so the clusters a verdict applies to are the ones the admin saw. Non-admins never reach any of this: the
router only takes admins in private chats, and a forged button from anyone else ends in the polite "expired" toast
of the general callbacks router.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.formatting import Bold, Text, as_list
from cachetools import LRUCache
from pydantic import Field

from bot.answering import texts
from bot.app.services import Services
from bot.app.settings import Settings
from bot.curation.suggest import draft_for_cluster, gap_listing, label_cluster
from bot.telegram.admin import flush_log, gaps_text
from bot.telegram.filters import inline

log = logging.getLogger("faqbot.telegram")

GAPS_LIMIT = 10
MAX_SHOWN_QUESTIONS = 8
MAX_SESSIONS = 64  # listings kept (one per admin is enough; a few spare for several admins)
FaqIdOrEmpty = Annotated[str, Field(pattern=r"^([a-z0-9_]{2,40})?$")]


class GapCB(CallbackData, prefix="gp"):
    """A gap-curation button: which listing (token), which cluster (n), what to do."""

    action: Literal["open", "entry", "pick", "new", "oos", "back"]
    token: Annotated[str, Field(pattern=r"^[0-9a-f]{8}$")]
    n: Annotated[int, Field(ge=0, lt=GAPS_LIMIT)]
    faq: FaqIdOrEmpty = ""


@dataclass
class Listing:
    admin_id: int
    clusters: list[dict[str, Any]]
    opened: dict[int, int] = field(default_factory=dict)  # message id of an opened cluster -> cluster index


class GapCuration:
    """State (the last listings) and handlers; one instance per Dispatcher."""

    def __init__(self) -> None:
        self.listings: LRUCache[str, Listing] = LRUCache(MAX_SESSIONS)

    # -- state ------------------------------------------------------------------------------------------
    def _remember(self, admin_id: int, clusters: list[dict[str, Any]]) -> str:
        for tok in [t for t, lst in self.listings.items() if lst.admin_id == admin_id]:
            del self.listings[tok]  # one live listing per admin: older buttons say "expired"
        token = secrets.token_hex(4)
        self.listings[token] = Listing(admin_id, clusters)
        return token

    def _cluster(self, cb: GapCB, admin_id: int) -> tuple[Listing, dict[str, Any]] | None:
        listing = self.listings.get(cb.token)
        if listing is None or listing.admin_id != admin_id or cb.n >= len(listing.clusters):
            return None
        return listing, listing.clusters[cb.n]

    def replied_cluster(self, message: Message) -> tuple[Listing, int] | None:
        replied = message.reply_to_message
        if replied is None or message.from_user is None:
            return None
        for listing in self.listings.values():
            if listing.admin_id == message.from_user.id and replied.message_id in listing.opened:
                return listing, listing.opened[replied.message_id]
        return None

    # -- rendering ----------------------------------------------------------------------------------------
    @staticmethod
    def _list_markup(token: str, clusters: list[dict[str, Any]]) -> InlineKeyboardMarkup:
        rows = [
            [
                InlineKeyboardButton(
                    text=f"{i + 1}. {_clip(c['representative'], 28)} ×{c['count']}",
                    callback_data=GapCB(action="open", token=token, n=i).pack(),
                )
            ]
            for i, c in enumerate(clusters)
        ]
        return InlineKeyboardMarkup(inline_keyboard=rows)

    @staticmethod
    def _cluster_view(token: str, n: int, c: dict[str, Any], kb) -> tuple[Text, InlineKeyboardMarkup]:
        shown = [f"{q['question']} ×{q['count']}" for q in c["questions"][:MAX_SHOWN_QUESTIONS]]
        more = len(c["questions"]) - len(shown)
        if more > 0:
            shown.append(f"……另有 {more} 种问法")
        near = c.get("nearest")
        entry = kb.get(near["faq_id"]) if near else None
        near_line = (
            texts.CURATE_NEAREST.format(title=entry.title, faq_id=entry.id, score=near["score"])
            if entry
            else texts.CURATE_NO_NEAREST
        )
        body = as_list(
            Bold(texts.CURATE_CLUSTER_HEAD.format(count=c["count"])),
            *[f"• {q}" for q in shown],
            near_line,
            texts.CURATE_REPLY_HINT,
        )
        rows = []
        if entry is not None:
            rows.append(
                [
                    InlineKeyboardButton(
                        text=texts.CURATE_BTN_ENTRY.format(title=entry.title),
                        callback_data=GapCB(action="entry", token=token, n=n, faq=entry.id).pack(),
                    )
                ]
            )
        rows += [
            [
                InlineKeyboardButton(
                    text=texts.CURATE_BTN_PICK, callback_data=GapCB(action="pick", token=token, n=n).pack()
                )
            ],
            [
                InlineKeyboardButton(
                    text=texts.CURATE_BTN_NEW, callback_data=GapCB(action="new", token=token, n=n).pack()
                ),
                InlineKeyboardButton(
                    text=texts.CURATE_BTN_OOS, callback_data=GapCB(action="oos", token=token, n=n).pack()
                ),
            ],
            [
                InlineKeyboardButton(
                    text=texts.CURATE_BTN_BACK, callback_data=GapCB(action="back", token=token, n=n).pack()
                )
            ],
        ]
        return body, InlineKeyboardMarkup(inline_keyboard=rows)

    # -- handlers -------------------------------------------------------------------------------------------
    async def cmd_gaps(self, message: Message, services: Services, settings: Settings) -> None:
        await flush_log(services)
        matcher = services.answerer.matcher
        clusters = await asyncio.to_thread(gap_listing, settings.db, matcher, GAPS_LIMIT)
        if clusters is None:
            await message.answer(texts.ADMIN_NO_LOG)
            return
        if not clusters:
            await message.answer(texts.ADMIN_GAPS_EMPTY)
            return
        token = self._remember(message.from_user.id, clusters)
        body = as_list(gaps_text(clusters), texts.CURATE_OPEN_HINT)
        await message.answer(**body.as_kwargs(), reply_markup=self._list_markup(token, clusters))

    async def on_button(
        self, callback: CallbackQuery, callback_data: GapCB, bot: Bot, services: Services, settings: Settings
    ) -> None:
        found = self._cluster(callback_data, callback.from_user.id)
        msg = callback.message
        if found is None or not isinstance(msg, Message):
            await callback.answer(texts.CURATE_STALE, show_alert=False)
            return
        listing, cluster = found
        cb, kb = callback_data, services.answerer.kb
        if cb.action == "open":
            body, markup = self._cluster_view(cb.token, cb.n, cluster, kb)
            sent = await msg.answer(**body.as_kwargs(), reply_markup=markup)
            listing.opened[sent.message_id] = cb.n
            await callback.answer()
        elif cb.action == "back":
            await callback.answer()
            await msg.answer(
                **as_list(gaps_text(listing.clusters), texts.CURATE_OPEN_HINT).as_kwargs(),
                reply_markup=self._list_markup(cb.token, listing.clusters),
            )
        elif cb.action == "pick":
            rows = [
                [
                    InlineKeyboardButton(
                        text=e.title or e.question,
                        callback_data=GapCB(action="entry", token=cb.token, n=cb.n, faq=e.id).pack(),
                    )
                ]
                for e in kb.entries
            ]
            await callback.answer()
            await msg.answer(texts.CURATE_PICK_HEAD, reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))
        else:
            verdict = {"entry": "entry", "new": "new-entry", "oos": "out-of-scope"}[cb.action]
            entry = kb.get(cb.faq) if cb.action == "entry" else None
            if cb.action == "entry" and entry is None:
                await callback.answer(texts.STALE_BUTTON)
                return
            n = await asyncio.to_thread(
                label_cluster,
                settings.db,
                cluster,
                verdict,
                entry.id if entry else None,
                curator=f"telegram:{callback.from_user.id}",
            )
            await callback.answer()
            if n == 0:
                await msg.answer(texts.CURATE_NOTHING_LEFT)
            elif entry is not None:
                await msg.answer(texts.CURATE_MARKED_ENTRY.format(n=n, title=entry.title, faq_id=entry.id))
            elif verdict == "new-entry":
                await msg.answer(texts.CURATE_MARKED_NEW.format(n=n))
            else:
                await msg.answer(texts.CURATE_MARKED_OOS.format(n=n))

    async def on_answer_reply(self, message: Message, services: Services, settings: Settings) -> None:
        """A reply to an opened cluster: its text becomes the answer of a draft entry."""
        listing, n = self.replied_cluster(message)  # the filter checked it
        cluster = listing.clusters[n]
        answer = (message.text or "").strip()
        if not answer:
            await message.answer(texts.CURATE_ANSWER_EMPTY)
            return
        try:
            draft_id, path = await asyncio.to_thread(
                draft_for_cluster,
                settings.db,
                services.answerer.kb,
                cluster,
                answer,
                curator=f"telegram:{message.from_user.id}",
            )
        except (ValueError, OSError) as exc:
            log.warning("draft from a chat answer failed: %s", type(exc).__name__)
            await message.answer(texts.CURATE_DRAFT_FAILED.format(error=exc))
            return
        log.info("draft entry %s written by an admin from Telegram", draft_id)
        await message.answer(texts.CURATE_DRAFT_OK.format(draft_id=draft_id, path=path))

    async def is_answer_reply(self, message: Message) -> bool:
        return self.replied_cluster(message) is not None


def _clip(text: str, n: int) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


def curation_router(settings: Settings) -> Router:
    """/gaps with buttons, the buttons, and replies with an answer; admins in private chats only."""
    cur = GapCuration()
    admins = frozenset(int(a) for a in settings.admin_ids)
    r = Router(name="curation")
    r.message.filter(inline((F.chat.type == ChatType.PRIVATE) & F.from_user.id.in_(admins)))
    r.callback_query.filter(inline(F.from_user.id.in_(admins) & (F.message.chat.type == ChatType.PRIVATE)))
    # Admins curating press buttons quickly; the flood limit is for the public (only admins reach these).
    free = {"throttle": False}
    r.message.register(cur.cmd_gaps, Command("gaps"), flags=free)
    r.message.register(cur.on_answer_reply, inline(F.text & F.reply_to_message), cur.is_answer_reply, flags=free)
    r.callback_query.register(cur.on_button, GapCB.filter(), flags=free)
    return r
