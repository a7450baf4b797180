"""Matrix side of the curator loop: admin commands in direct rooms, and "通知我" replies.

Admins (``MATRIX_ADMIN_IDS``, Matrix user ids), in a direct room with the bot:

    !gaps                      the gap inbox, numbered
    !gap N                     the questions of cluster N and its nearest entry
    !mark N entry ID | new | oos   mark every open turn of cluster N (should be entry ID / new entry / out of scope)
    !answer N <text>           a draft entry (knowledge/drafts/, never served) with <text> as its answer
    !reload                    reload the knowledge; then questions that now have an answer are sent to those waiting

Anyone else's ``!gaps`` is an ordinary question (nothing here answers it). A person whose question got an
out-of-scope answer in a direct room can reply 通知我 to that answer: the request is stored like a Telegram one
(``storage.subscriptions``, channel "matrix", the room id as the chat id) after checking the turn is theirs.

``MatrixCuration.handle`` returns the text to send back, or None when the message is not for it; the transport
(``bot/matrix/app.py``) stays unaware of the details.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from bot.answering import texts
from bot.app.services import Services
from bot.app.settings import Settings
from bot.curation.suggest import draft_for_cluster, gap_listing, label_cluster, turn_owner_and_question
from storage import subscriptions

log = logging.getLogger("faqbot.matrix")

CHANNEL = "matrix"
GAPS_LIMIT = 10
_COMMAND_RE = re.compile(r"^!(gaps|gap|mark|answer|reload)\b\s*(.*)$", re.S)


def strip_reply_fallback(body: str) -> str:
    """A reply's body without the quoted fallback ("> <@user> …" lines and the blank line after them)."""
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i and i < len(lines) and not lines[i].strip():
        i += 1
    return "\n".join(lines[i:]) if i else body


class MatrixCuration:
    def __init__(self, services: Services, settings: Settings):
        self.services, self.settings = services, settings
        self.admins = frozenset(settings.matrix_admin_ids)
        self.listings: dict[str, list[dict[str, Any]]] = {}  # admin -> the clusters of their last !gaps

    async def handle(
        self, *, room_id: str, sender: str, body: str, replied_turn: str | None, direct: bool
    ) -> str | None:
        if not direct:
            return None
        text = strip_reply_fallback(body).strip()
        if text == texts.MATRIX_NOTIFY_WORD and replied_turn is not None:
            return await self._subscribe(room_id, sender, replied_turn)
        if sender in self.admins:
            m = _COMMAND_RE.match(text)
            if m:
                return await self._command(sender, m.group(1), m.group(2).strip())
        return None

    # -- tell the asker ------------------------------------------------------------------------------------
    async def _subscribe(self, room_id: str, sender: str, turn_id: str) -> str:
        log_ = self.services.turn_log
        if log_ is None:
            return texts.NOTIFY_UNAVAILABLE
        await log_.flush(timeout=2.0)
        found = await asyncio.to_thread(turn_owner_and_question, self.settings.db, turn_id)
        if found is None or found[0] != log_.pseudonym(sender) or not (found[1] or "").strip():
            return texts.NOTIFY_UNAVAILABLE
        new = await asyncio.to_thread(
            subscriptions.subscribe,
            subscriptions.path_for(self.settings.db),
            channel=CHANNEL,
            chat_id=room_id,
            turn_id=turn_id,
            question=found[1].strip(),
        )
        return texts.NOTIFY_OK if new else texts.NOTIFY_ALREADY

    # -- admin commands --------------------------------------------------------------------------------------
    async def _command(self, admin: str, name: str, rest: str) -> str:
        if name == "reload":
            return await self._reload()
        if name == "gaps":
            if self.services.turn_log is not None:
                await self.services.turn_log.flush(timeout=2.0)
            clusters = await asyncio.to_thread(
                gap_listing, self.settings.db, self.services.answerer.matcher, GAPS_LIMIT
            )
            if clusters is None:
                return texts.ADMIN_NO_LOG
            self.listings[admin] = clusters
            if not clusters:
                return texts.ADMIN_GAPS_EMPTY
            lines = [f"{i}. {c['representative']} ×{c['count']}" for i, c in enumerate(clusters, 1)]
            return "\n".join([texts.ADMIN_GAPS_HEAD, *lines, texts.MATRIX_CURATE_HELP])
        parts = rest.split(maxsplit=1)
        clusters = self.listings.get(admin) or []
        if not parts or not parts[0].isdecimal() or not 1 <= int(parts[0]) <= len(clusters):
            return texts.MATRIX_CURATE_PICK
        cluster = clusters[int(parts[0]) - 1]
        arg = parts[1].strip() if len(parts) > 1 else ""
        kb = self.services.answerer.kb
        if name == "gap":
            near = cluster.get("nearest")
            entry = kb.get(near["faq_id"]) if near else None
            lines = [texts.CURATE_CLUSTER_HEAD.format(count=cluster["count"])]
            lines += [f"• {q['question']} ×{q['count']}" for q in cluster["questions"][:8]]
            lines.append(
                texts.CURATE_NEAREST.format(title=entry.title, faq_id=entry.id, score=near["score"])
                if entry
                else texts.CURATE_NO_NEAREST
            )
            lines.append(texts.MATRIX_CURATE_HELP)
            return "\n".join(lines)
        curator = f"matrix:{admin}"
        if name == "answer":
            if not arg:
                return texts.CURATE_ANSWER_EMPTY
            try:
                draft_id, path = await asyncio.to_thread(
                    draft_for_cluster, self.settings.db, kb, cluster, arg, curator=curator
                )
            except (ValueError, OSError) as exc:
                return texts.CURATE_DRAFT_FAILED.format(error=exc)
            return texts.CURATE_DRAFT_OK.format(draft_id=draft_id, path=path)
        # !mark N entry ID | new | oos
        words = arg.split()
        kind = words[0].lower() if words else ""
        if kind == "entry" and len(words) == 2 and kb.get(words[1]) is not None:
            verdict, faq_id = "entry", words[1]
        elif kind in ("new", "new-entry") and len(words) == 1:
            verdict, faq_id = "new-entry", None
        elif kind in ("oos", "out-of-scope") and len(words) == 1:
            verdict, faq_id = "out-of-scope", None
        else:
            return texts.MATRIX_CURATE_HELP
        n = await asyncio.to_thread(label_cluster, self.settings.db, cluster, verdict, faq_id, curator=curator)
        if n == 0:
            return texts.CURATE_NOTHING_LEFT
        if verdict == "entry":
            e = kb.get(faq_id)
            return texts.CURATE_MARKED_ENTRY.format(n=n, title=e.title, faq_id=e.id)
        return (texts.CURATE_MARKED_NEW if verdict == "new-entry" else texts.CURATE_MARKED_OOS).format(n=n)

    async def _reload(self) -> str:
        from knowledge.loader import KnowledgeError

        answerer = self.services.answerer
        try:
            kb = answerer.reload()
        except KnowledgeError as exc:
            return texts.ADMIN_RELOAD_FAILED.format(version=answerer.kb.version, error=exc)
        await self.services.after_reload()
        return texts.ADMIN_RELOAD_OK.format(entries=len(kb.entries), version=kb.version)
