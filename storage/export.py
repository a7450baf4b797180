"""Export logged turns with their feedback counts as CSV or JSON Lines, oldest first, streaming (no full load).

Pseudonymous user ids and chat ids are not exported (``conversation_id`` links turns of one conversation).
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import sqlite3
from typing import IO, Any, Iterator

from storage.queries import _LATEST_FEEDBACK, FEEDBACK_FILTERS, turn_filters
from storage.trace import decode_candidates

FORMATS = ("csv", "jsonl")

COLUMNS = (
    "turn_id", "ts", "channel", "via", "chat_type", "conversation_id", "question", "normalized", "route", "faq_id",
    "section", "score", "candidates", "context_ids", "model", "llm_raw", "guard", "answer", "latency_ms",
    "knowledge_version", "error", "masked_id", "masked_phone", "masked_bank",
    "feedback", "thumbs_up", "thumbs_down", "none_of_these",
)
_JSON_COLUMNS = ("candidates", "context_ids")

_LATEST = _LATEST_FEEDBACK


def _count(kind: str) -> str:
    return f"(SELECT count(*) FROM feedback f WHERE f.turn_id = t.id AND f.kind = '{kind}')"


_SELECT = f"""
SELECT t.id AS turn_id, t.ts, t.channel, t.via, c.chat_type, t.conversation_id, t.question, t.normalized, t.route,
       t.faq_id, t.section, t.score, t.candidates, t.context_ids, t.model, t.llm_raw, t.guard, t.answer,
       t.latency_ms, t.knowledge_version, t.error, t.masked_id, t.masked_phone, t.masked_bank,
       {_LATEST} AS feedback, {_count('up')} AS thumbs_up, {_count('down')} AS thumbs_down,
       {_count('none')} AS none_of_these
FROM turns t LEFT JOIN conversations c ON c.id = t.conversation_id
"""


def iter_turns(
    conn: sqlite3.Connection,
    *,
    route: str | None = None,
    since: _dt.datetime | None = None,
    channel: str | None = None,
    feedback: str | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Turns as dicts (COLUMNS; JSON columns decoded to lists), oldest first. Filters as ``logs list``;
    ``limit`` keeps the most recent N (None or 0 = all)."""
    where, params = turn_filters(route=route, since=since, channel=channel, feedback=feedback)
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    if limit and limit > 0:
        sql = f"SELECT * FROM ({sql} ORDER BY t.ts DESC, t.id DESC LIMIT ?) ORDER BY ts, turn_id"
        params.append(int(limit))
    else:
        sql += " ORDER BY t.ts, t.id"
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    for row in cur:
        d = dict(zip(names, tuple(row)))
        d["candidates"] = decode_candidates(d["candidates"])
        try:
            value = json.loads(d["context_ids"]) if d["context_ids"] else []
        except ValueError:
            value = []
        d["context_ids"] = value if isinstance(value, list) else []
        yield d


def write_export(rows: Iterator[dict[str, Any]], out: IO[str], fmt: str) -> int:
    """Write rows to a text stream as ``csv`` (lists as JSON text, header row) or ``jsonl``; return the count."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for d in rows:
            flat = dict(d)
            for col in _JSON_COLUMNS:
                flat[col] = json.dumps(d[col], ensure_ascii=False)
            writer.writerow(flat)
            n += 1
    else:
        for d in rows:
            out.write(json.dumps({k: d.get(k) for k in COLUMNS}, ensure_ascii=False) + "\n")
            n += 1
    return n
