"""One answered turn -> the rows the log stores: personal data masked, ids pseudonymized, the trace compacted.

``prepare_turn`` is a pure function of its arguments (no database, no clock, no state): the log writer
(storage/writer.py) calls it for every queued turn on a worker thread, tests call it directly
(tests/storage/test_rows.py). The pseudonymizing function is passed in, so the writer can cache the HMACs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Callable
from typing import Any, NamedTuple

from bot.answering.privacy import mask_pii
from bot.answering.types import Reply
from storage.db import utc_iso
from storage.schema import TURN_COLUMNS
from storage.trace import encode_candidates, stored_llm_raw

# Chats whose id identifies a person: stored as an HMAC, like user ids.
PRIVATE_CHAT_TYPES = frozenset({"private", "direct", "console", "cli"})  # "direct": a Matrix DM room
MASK_KINDS = ("id", "phone", "bank")  # the turns.masked_* counters


class TurnRows(NamedTuple):
    turn_id: str
    conversation: tuple  # (key, channel, chat_id, chat_type, user_hash, started): a conversations row
    turn: tuple  # one value per schema.TURN_COLUMNS; conversation_id is the conversation key, knowledge_id the version
    remasked: bool  # the question still held personal data (an upstream miss) and was masked here


def conversation_key(channel: str, chat_id: str | None, user_hash: str | None) -> str:
    """sha256 of channel|chat_id|user_hash, over the values as stored (private chat ids already pseudonymized)."""
    return hashlib.sha256(f"{channel}|{chat_id or ''}|{user_hash or ''}".encode()).hexdigest()


def _counts(masked: Any) -> dict[str, int]:
    counts = getattr(masked, "counts", None) or {}
    return {k: int(counts.get(k, 0) or 0) for k in MASK_KINDS}


def prepare_turn(
    reply: Reply,
    *,
    when: float,
    channel: str,
    chat_id: Any,
    chat_type: str,
    user_id: Any,
    pseudonym: Callable[[str], str],
    redact: Callable[[str], str] = str,
) -> TurnRows:
    """The rows for one turn answered at ``when`` (a Unix time) in a chat. Every stored text is masked
    (``mask_pii``) after ``redact`` (which removes configured secrets); the user id, and the chat id of a private
    chat, are stored as ``pseudonym(id)``."""

    def mask(text: str | None) -> tuple[str | None, dict[str, int]]:
        if text is None:
            return None, dict.fromkeys(MASK_KINDS, 0)
        m = mask_pii(redact(str(text)))
        return m.text, _counts(m)

    ts = utc_iso(_dt.datetime.fromtimestamp(when, _dt.UTC))
    channel = str(channel)
    user = None if user_id in (None, "") else str(user_id)
    user_hash = pseudonym(user) if user is not None else None
    chat = None if chat_id in (None, "") else str(chat_id)
    private = chat_type in PRIVATE_CHAT_TYPES or (user is not None and chat == user)
    stored_chat = pseudonym(chat) if (private and chat is not None) else chat
    key = conversation_key(channel, stored_chat, user_hash)

    # Defensive: the core masks the question already; masking is idempotent, so this only catches misses.
    question, extra = mask(reply.question)
    normalized, _ = mask(reply.normalized)
    answer, _ = mask(reply.text)
    llm_raw, _ = mask(reply.llm_raw)
    guard, _ = mask(reply.guard)
    error, _ = mask(reply.error)
    given = reply.masked or {}
    masked = {k: int(given.get(k, 0) or 0) + extra[k] for k in MASK_KINDS}

    turn_id = str(reply.turn_id)
    values = {
        "id": turn_id,
        "conversation_id": key,
        "ts": ts,
        "channel": channel,
        "via": reply.via,
        "question": question,
        "normalized": normalized,
        "route": str(reply.route),  # a Route (StrEnum) or its value
        "faq_id": reply.faq_id,
        "section": None if reply.section is None else int(reply.section),
        "score": float(reply.score) if reply.score is not None else None,
        "candidates": encode_candidates(reply.candidates),
        "context_ids": json.dumps([str(c) for c in reply.context_ids], ensure_ascii=False),
        "model": reply.model,
        "llm_raw": stored_llm_raw(llm_raw, answer),
        "guard": guard,
        "answer": answer,
        # whole milliseconds: a REAL without a fraction is stored as a 1-3 byte integer instead of 8 bytes
        "latency_ms": float(round(reply.latency_ms)) if reply.latency_ms is not None else None,
        "knowledge_id": reply.knowledge_version or None,
        "error": error,
        **{f"masked_{k}": masked[k] for k in MASK_KINDS},
    }
    return TurnRows(
        turn_id,
        (key, channel, stored_chat, chat_type, user_hash, ts),
        tuple(values[c] for c in TURN_COLUMNS),
        any(extra.values()),
    )
