"""Tell the asker: after a knowledge reload, questions someone asked to be told about and that now get a direct
answer get that answer sent once, with a line saying it was asked earlier (channel-neutral; each channel passes
its own ``send``). Requests are stored by ``storage.subscriptions`` (opt-in, 30 days, deleted once answered).

Whether a question "now gets a direct answer" is the replay logic: the current matcher routes it ``faq``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.answering import texts
from bot.answering.types import NOT_A_QUESTION, Reason, Route
from knowledge.normalize import to_traditional
from storage import subscriptions

log = logging.getLogger("faqbot.notify")

Send = Callable[[str, str], Awaitable[Any]]


def offers_notify(reply) -> bool:
    """An out-of-scope answer to a real question: the asker may ask to be told when it has an answer."""
    return reply.route is Route.NONE and not reply.error and bool(reply.question) and reply.reason not in NOT_A_QUESTION


def follow_up_text(question: str, answer: str, traditional: bool = False) -> str:
    head = texts.NOTIFY_FOLLOW_UP.format(question=question)
    return f"{to_traditional(head) if traditional else head}\n\n{answer}"


async def follow_up(answerer, log_db: Path, channel: str, send: Send) -> dict[str, int]:
    """Send the answers that now exist; returns {sent, failed, waiting, purged}. Each request is claimed (deleted)
    before its message goes out, so nobody gets it twice, even with two instances reloading at once."""
    path = subscriptions.path_for(log_db)
    purged = await asyncio.to_thread(subscriptions.purge_expired, path)
    subs = await asyncio.to_thread(subscriptions.pending, path, channel)
    sent = failed = 0
    for s in subs:
        reply = answerer.match(s["question"])
        if reply.route is not Route.FAQ or reply.reason == Reason.CHOSEN:
            continue
        if not await asyncio.to_thread(subscriptions.claim, path, s["id"]):
            continue
        answer = to_traditional(reply.text) if s["traditional"] and not reply.traditional else reply.text
        try:
            await send(s["chat_id"], follow_up_text(s["question"], answer, bool(s["traditional"])))
            sent += 1
        except Exception as exc:  # blocked the bot, left the chat...: the request is gone either way
            failed += 1
            log.info("follow-up answer not delivered (%s)", type(exc).__name__)
    result = {"sent": sent, "failed": failed, "waiting": len(subs) - sent - failed, "purged": purged}
    if sent or failed or purged:
        log.info("follow-up answers on %s: %s", channel, result)
    return result
