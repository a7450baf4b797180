"""Admin commands, for the Telegram user ids in ``FAQBOT_ADMIN_IDS`` and in private chats only.

``/stats`` (the numbers of ``faqbot logs stats``), ``/reload`` (reload the knowledge and prompts; validated first,
the running version stays on error). ``/gaps`` (the gap inbox, with buttons to mark clusters) is in
``bot/telegram/curation.py``.

Everyone else sees no trace of them: the router only matches admins in private chats. From a non-admin in a
private chat the command is just text and gets the ordinary answer (the same as any unknown command); in a group
it is ignored like any command that is not one of the bot's public ones.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.formatting import Bold, Text, as_key_value, as_list, as_marked_section

from bot.answering import texts
from bot.app.services import Services
from bot.app.settings import Settings
from bot.telegram.answering import Target, send_texts
from bot.telegram.filters import inline
from bot.telegram.notify import deliver_follow_ups
from bot.telegram.render import split_text
from knowledge.loader import KnowledgeError

log = logging.getLogger("faqbot.telegram")

GAPS_LIMIT = 10


async def flush_log(services: Services) -> None:
    """Let the numbers include the turns of the last moments (best effort, short)."""
    if services.turn_log is not None:
        try:
            await services.turn_log.flush(timeout=2.0)
        except Exception as exc:  # an unavailable log must not break the command
            log.warning("could not flush the conversation log before an admin query: %s", type(exc).__name__)


def query_log(db: Path, fn):
    from storage.db import open_db_sync

    try:
        conn = open_db_sync(db, readonly=True)
    except FileNotFoundError:
        return None
    try:
        return fn(conn)
    finally:
        conn.close()


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def stats_text(s: dict[str, Any]) -> Text:
    routes = "，".join(f"{k} {v}" for k, v in s.get("by_route", {}).items()) or "-"
    channels = "，".join(f"{k} {v}" for k, v in s.get("by_channel", {}).items()) or "-"
    top = [f"{t['faq_id']}：{t['count']}" for t in s.get("top_entries", [])[:5]]
    items = [
        as_key_value(texts.ADMIN_STATS_TOTAL, s.get("total", 0)),
        as_key_value(texts.ADMIN_STATS_DIRECT, f"{s.get('direct_rate', 0.0):.1%}"),
        as_key_value(texts.ADMIN_STATS_ROUTES, routes),
        as_key_value(texts.ADMIN_STATS_CHANNELS, channels),
        as_key_value(
            texts.ADMIN_STATS_FEEDBACK,
            texts.ADMIN_STATS_FEEDBACK_LINE.format(
                up=s.get("thumbs_up", 0), down=s.get("thumbs_down", 0), none=s.get("none_of_these", 0)
            ),
        ),
        as_key_value(texts.ADMIN_STATS_GUARD, s.get("guard_failures", 0)),
        as_key_value(texts.ADMIN_STATS_ERRORS, s.get("errors", 0)),
        as_key_value(texts.ADMIN_STATS_LATENCY, f"{_ms(s.get('latency_p50_ms'))} / {_ms(s.get('latency_p95_ms'))}"),
    ]
    r = s.get("reviews")
    if r:  # curators' verdicts (storage/reviews.py)
        items.append(
            as_key_value(
                texts.ADMIN_STATS_REVIEWS,
                texts.ADMIN_STATS_REVIEWS_LINE.format(
                    reviewed=r["reviewed"], confirmed=r["direct_confirmed"], direct=r["direct_reviewed"], open=r["open"]
                ),
            )
        )
    if top:
        items.append(as_marked_section(Bold(texts.ADMIN_STATS_TOP), *top, marker="• "))
    return as_list(Bold(texts.ADMIN_STATS_HEAD), *items)


def gaps_text(clusters: list[dict[str, Any]]) -> Text:
    if not clusters:
        return Text(texts.ADMIN_GAPS_EMPTY)
    lines = []
    for i, c in enumerate(clusters, 1):
        label = c.get("representative") or (c.get("examples") or ["?"])[0]
        nearest = c.get("nearest") or {}
        near = f"（最接近：{nearest['faq_id']} {nearest.get('score', 0):.0f}）" if nearest.get("faq_id") else ""
        lines.append(f"{i}. {label} ×{c.get('count', 0)}{near}")
    return as_list(Bold(texts.ADMIN_GAPS_HEAD), *lines)


async def cmd_stats(message: Message, services: Services, settings: Settings) -> None:
    from storage.queries import stats
    from storage.reviews import review_stats

    await flush_log(services)
    result = await asyncio.to_thread(
        query_log, settings.db, lambda conn: {**stats(conn), "reviews": review_stats(conn)}
    )
    await message.answer(**(Text(texts.ADMIN_NO_LOG) if result is None else stats_text(result)).as_kwargs())


async def cmd_reload(message: Message, bot: Bot, services: Services) -> None:
    answerer = services.answerer
    try:
        kb = answerer.reload()
    except Exception as exc:  # KnowledgeError lists every problem; anything else (prompts...) by its message
        if isinstance(exc, KnowledgeError):
            log.warning("knowledge reload rejected: %d problem(s)", len(exc.problems))
        else:
            log.exception("knowledge reload failed")
        error = str(exc) if isinstance(exc, KnowledgeError) else f"{type(exc).__name__}: {exc}"
        body = texts.ADMIN_RELOAD_FAILED.format(version=answerer.kb.version, error=error)
        await send_texts(bot, Target.for_message(message), [Text(c) for c in split_text(body)])
        return
    log.info("knowledge reloaded by an admin: %d entries, version %s", len(kb.entries), kb.version)
    await message.answer(texts.ADMIN_RELOAD_OK.format(entries=len(kb.entries), version=kb.version))
    # Tell the askers whose questions now have an answer: every running channel (Services.followers), and this
    # bot's own Telegram requests when its transport did not register (a Dispatcher fed directly).
    if "telegram" not in services.followers:
        await deliver_follow_ups(bot, services)
    await services.after_reload()


def admin_router(settings: Settings) -> Router:
    r = Router(name="admin")
    admins = frozenset(int(a) for a in settings.admin_ids)
    r.message.filter(inline((F.chat.type == ChatType.PRIVATE) & F.from_user.id.in_(admins)))
    r.message.register(cmd_stats, Command("stats"))
    r.message.register(cmd_reload, Command("reload"))
    return r
