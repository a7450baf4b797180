"""Read helpers over the conversation log, for the review CLI (retention: storage/purge.py).

All functions take a ``sqlite3.Connection`` from ``storage.db.open_db_sync`` and return plain dicts; JSON columns (``candidates``, ``context_ids``) come back as lists.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sqlite3
from collections.abc import Iterator
from typing import Any

from bot.answering.types import Route
from storage.db import utc_iso
from storage.migrations import LATENCY_BUCKET_SQL
from storage.schema import FEEDBACK_FILTERS, JSON_COLUMNS, REVIEW_VIEW, TURN_READ_COLUMNS
from storage.trace import decode_candidates


# Every turn read selects from the review view (alias t): it defines the latest feedback, what a gap is and the
# latest review once (migration m009).
def _turn_select(extra: tuple[str, ...] = ()) -> str:
    return f"SELECT {', '.join('t.' + c for c in (*TURN_READ_COLUMNS, 'feedback', *extra))} FROM {REVIEW_VIEW} t"


_TURN_SELECT = _turn_select()


def _json_list(value: str | None) -> list[Any]:
    if not value:
        return []
    try:
        out = json.loads(value)
    except ValueError:
        return []
    return out if isinstance(out, list) else []


# How each JSON column (schema.JSON_COLUMNS) is read back: unreadable text becomes an empty list.
JSON_DECODERS = {"candidates": decode_candidates, "context_ids": _json_list}


def _turn_dict(row: sqlite3.Row | tuple, cursor_description: Any) -> dict[str, Any]:
    names = [d[0] for d in cursor_description]
    d = dict(zip(names, tuple(row), strict=False))
    d.pop("turn_rowid", None)
    d["turn_id"] = d["id"]
    for col in JSON_COLUMNS:
        d[col] = JSON_DECODERS[col](d.get(col))
    return d


def _fetch_turns(conn: sqlite3.Connection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    return [_turn_dict(r, cur.description) for r in cur.fetchall()]


def _since(since: _dt.datetime | str | None) -> str | None:
    if since is None:
        return None
    if isinstance(since, str):  # already an ISO timestamp
        return since
    return utc_iso(since)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def turn_filters(
    *,
    route: str | None = None,
    since: _dt.datetime | str | None = None,
    channel: str | None = None,
    feedback: str | None = None,
) -> tuple[list[str], list[Any]]:
    """WHERE clauses (on alias ``t`` = the review view) and parameters shared by every verb that filters turns like
    ``logs list``."""
    where: list[str] = []
    params: list[Any] = []
    if route is not None:
        where.append("t.route = ?")
        params.append(str(route))
    if since is not None:
        where.append("t.ts >= ?")
        params.append(_since(since))
    if channel is not None:
        where.append("t.channel = ?")
        params.append(channel)
    if feedback is not None:
        if feedback not in FEEDBACK_FILTERS:
            raise ValueError(f"feedback must be one of {FEEDBACK_FILTERS}")
        if feedback == "any":
            where.append("t.feedback IS NOT NULL")
        else:
            where.append("t.feedback = ?")
            params.append(feedback)
    return where, params


# Newest first: ts, then rowid (logging order) for turns logged in the same millisecond. Both are in the ts index
# (an index holds the rowid), so a page reads 20 index entries; ordering by id instead made SQLite sort every turn
# (EXPLAIN QUERY PLAN: USE TEMP B-TREE FOR ORDER BY).
_NEWEST_FIRST = " ORDER BY t.ts DESC, t.turn_rowid DESC"
ORDERS = ("newest", "oldest")


def list_turns(
    conn: sqlite3.Connection,
    *,
    route: str | None = None,
    since: _dt.datetime | None = None,
    channel: str | None = None,
    feedback: str | None = None,
    limit: int | None = 50,
) -> list[dict[str, Any]]:
    """Most recent turns first, filtered by route, time, channel and latest feedback ('up'/'down'/'none'/'any');
    ``limit`` None or 0 = all."""
    return list(iter_turns(conn, route=route, since=since, channel=channel, feedback=feedback, limit=limit))


def iter_turns(
    conn: sqlite3.Connection,
    *,
    route: str | None = None,
    since: _dt.datetime | str | None = None,
    channel: str | None = None,
    feedback: str | None = None,
    order: str = "newest",
    limit: int | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[dict[str, Any]]:
    """The turns selected like ``logs list`` (route, time, channel, latest feedback), one at a time from the cursor
    (bounded memory). ``order`` 'newest' (first) or 'oldest'; ``limit`` keeps the most recent N (None or 0 = all),
    in that order. Each dict has the view's turn columns (schema.TURN_READ_COLUMNS, JSON columns decoded to lists),
    ``feedback``, ``turn_id`` (= id) and the review view's ``extra`` columns."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}")
    where, params = turn_filters(route=route, since=since, channel=channel, feedback=feedback)
    limited = bool(limit and limit > 0)
    sql = _turn_select(extra + (("turn_rowid",) if limited and order == "oldest" else ()))
    sql += " WHERE " + " AND ".join(where) if where else ""
    if limited:
        sql += _NEWEST_FIRST + " LIMIT ?"
        params.append(int(limit))
        if order == "oldest":  # the most recent N, oldest of them first
            sql = f"SELECT * FROM ({sql}) ORDER BY ts, turn_rowid"
    else:
        sql += _NEWEST_FIRST if order == "newest" else " ORDER BY t.ts, t.turn_rowid"
    cur = conn.execute(sql, params)
    desc = cur.description
    for row in cur:
        yield _turn_dict(row, desc)


def get_turn(conn: sqlite3.Connection, turn_id_or_prefix: str) -> dict[str, Any] | None:
    """One turn by full id or unique prefix, with its conversation, feedback and reviews; None if not found.

    An ambiguous prefix raises ``ValueError`` naming the candidates.
    """
    key = (turn_id_or_prefix or "").strip()
    if not key:
        return None
    rows = _fetch_turns(conn, _TURN_SELECT + " WHERE t.id = ?", [key])
    if not rows:
        rows = _fetch_turns(
            conn, _TURN_SELECT + " WHERE t.id LIKE ? ESCAPE '\\' ORDER BY t.id LIMIT 6", [_like_escape(key) + "%"]
        )
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows[:5])
            raise ValueError(f"turn id prefix {key!r} is ambiguous: {ids}{' …' if len(rows) > 5 else ''}")
    if not rows:
        return None
    turn = rows[0]
    conv = conn.execute(
        "SELECT channel, chat_id, chat_type, user_hash, started FROM conversations WHERE id = ?",
        (turn["conversation_id"],),
    ).fetchone()
    turn["conversation"] = (
        dict(zip(("channel", "chat_id", "chat_type", "user_hash", "started"), tuple(conv), strict=False))
        if conv
        else None
    )
    turn["feedback_events"] = [
        {"kind": r[0], "ts": r[1]}
        for r in conn.execute("SELECT kind, ts FROM feedback WHERE turn_id = ? ORDER BY id", (turn["id"],))
    ]
    turn["reviews"] = [
        dict(zip(("id", "status", "label", "faq_id", "note", "reviewer", "ts"), tuple(r), strict=False))
        for r in conn.execute(
            "SELECT id, status, label, faq_id, note, reviewer, ts FROM reviews WHERE turn_id = ? ORDER BY id",
            (turn["id"],),
        )
    ]
    return turn


def _sql_limit(limit: int | None) -> int:
    return int(limit) if limit and limit > 0 else -1  # SQLite: a negative LIMIT is no limit


def fts_phrase(text: str) -> str:
    """An FTS5 query matching ``text`` literally (one quoted string; operators and quotes lose their meaning)."""
    return '"' + text.replace('"', '""') + '"'


def search_turns(conn: sqlite3.Connection, text: str, limit: int | None = 50) -> list[dict[str, Any]]:
    """Turns whose question contains ``text``; the most recently logged first (``limit`` None or 0 = all).

    Uses the trigram FTS index of the question for 3+ characters (any substring, e.g. '社保卡' in '电子社保卡怎么申领')
    and a LIKE scan for 1–2 characters, which trigrams cannot index. Both walk the log newest first (rowid order is
    logging order) and stop after ``limit`` hits, so a common word costs one page, not every match.
    """
    text = (text or "").strip()
    if not text:
        return []
    if len(text) >= 3:
        hits = "SELECT rowid FROM turns_fts WHERE turns_fts MATCH ?1 ORDER BY rowid DESC LIMIT ?2"
        params: list[Any] = [fts_phrase(text), _sql_limit(limit)]
    else:
        hits = "SELECT rowid FROM turns WHERE question LIKE ?1 ESCAPE '\\' ORDER BY rowid DESC LIMIT ?2"
        params = ["%" + _like_escape(text) + "%", _sql_limit(limit)]
    sql = _TURN_SELECT + f" WHERE t.turn_rowid IN ({hits}) ORDER BY t.ts DESC, t.id DESC"
    return _fetch_turns(conn, sql, params)


_STATS_COLUMNS = "channel, route, faq_id, turns, guard_failures, errors, fb_up, fb_down, fb_none"


def _stats_rows(conn: sqlite3.Connection, since: str | None) -> tuple[list[tuple], list[tuple]]:
    """(summary rows, latency buckets) for the turns since ``since``: whole UTC days from the daily summary tables,
    the first (partial) day of the window from the turns themselves (one day of rows, read by the ts index)."""
    if since is None:
        rows = conn.execute(f"SELECT {_STATS_COLUMNS} FROM stats_daily").fetchall()
        lat = conn.execute("SELECT bucket, n FROM stats_latency").fetchall()
        return rows, lat
    day0 = since[:10]
    rows = conn.execute(f"SELECT {_STATS_COLUMNS} FROM stats_daily WHERE day > ?", (day0,)).fetchall()
    lat = conn.execute("SELECT bucket, n FROM stats_latency WHERE day > ?", (day0,)).fetchall()
    # The rest of day0 from `since` on: 'T' < 'U', so every timestamp of that day sorts below day0 + 'U'.
    window = (since, day0 + "U")
    rows += conn.execute(
        "SELECT channel, route, coalesce(faq_id, ''), count(*), sum(coalesce(guard LIKE 'fail%', 0)), "
        "sum(error IS NOT NULL), sum(k = 'up'), sum(k = 'down'), sum(k = 'none') "
        "FROM (SELECT t.channel, t.route, t.faq_id, t.guard, t.error, coalesce(t.feedback, '') AS k "
        f"      FROM {REVIEW_VIEW} t WHERE t.ts >= ? AND t.ts < ?) GROUP BY 1, 2, 3",
        window,
    ).fetchall()
    lat += conn.execute(
        f"SELECT {LATENCY_BUCKET_SQL.format(x='latency_ms')}, count(*) FROM turns "
        "WHERE ts >= ? AND ts < ? AND latency_ms IS NOT NULL GROUP BY 1",
        window,
    ).fetchall()
    return rows, lat


def _bucket_percentile(buckets: dict[float, int], q: float) -> float | None:
    """Nearest-rank percentile over latency buckets (values rounded to two significant digits)."""
    n = sum(buckets.values())
    if n <= 0:
        return None
    rank = max(1, math.ceil(q * n - 1e-9))
    seen = 0
    for value in sorted(buckets):
        seen += buckets[value]
        if seen >= rank:
            return float(value)
    return float(max(buckets))


def stats(conn: sqlite3.Connection, since: _dt.datetime | str | None = None, *, top: int = 10) -> dict[str, Any]:
    """Summary numbers over the turns since ``since`` (all turns when None).

    Keys: total, by_route, by_channel, direct_rate (faq / total), thumbs_up, thumbs_down, none_of_these
    (counted on each turn's latest feedback), guard_failures, errors, latency_p50_ms, latency_p95_ms
    (nearest rank, latencies rounded to two significant digits), top_entries (list of {faq_id, count}, turns
    answered directly from each entry, most first).

    Reads the daily summary kept by the schema's triggers (``stats_daily``, ``stats_latency``) plus at most one
    day of turns, so the cost does not grow with the size of the log.
    """
    rows, lat = _stats_rows(conn, _since(since))
    by_route: dict[str, int] = {}
    by_channel: dict[str, int] = {}
    entries: dict[str, int] = {}
    total = guard_failures = errors = up = down = none = 0
    for channel, route, faq_id, n, g, e, fu, fd, fn in rows:
        if not n:
            continue
        total += n
        by_route[route] = by_route.get(route, 0) + n
        by_channel[channel] = by_channel.get(channel, 0) + n
        if route == Route.FAQ and faq_id:
            entries[faq_id] = entries.get(faq_id, 0) + n
        guard_failures += g or 0
        errors += e or 0
        up, down, none = up + (fu or 0), down + (fd or 0), none + (fn or 0)
    buckets: dict[float, int] = {}
    for value, n in lat:
        buckets[value] = buckets.get(value, 0) + n

    def most_first(d: dict[str, int]) -> dict[str, int]:
        return dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0])))

    return {
        "total": total,
        "by_route": most_first(by_route),
        "by_channel": most_first(by_channel),
        "direct_rate": (by_route.get(Route.FAQ, 0) / total) if total else 0.0,
        "thumbs_up": up,
        "thumbs_down": down,
        "none_of_these": none,
        "guard_failures": guard_failures,
        "errors": errors,
        "latency_p50_ms": _bucket_percentile(buckets, 0.50),
        "latency_p95_ms": _bucket_percentile(buckets, 0.95),
        "top_entries": [{"faq_id": k, "count": v} for k, v in list(most_first(entries).items())[: max(0, int(top))]],
    }


def gap_rows(conn: sqlite3.Connection, since: _dt.datetime | None = None) -> list[dict[str, Any]]:
    """``iter_gap_rows`` as a list."""
    return list(iter_gap_rows(conn, since=since))


def iter_gap_rows(
    conn: sqlite3.Connection, since: _dt.datetime | None = None, *, candidates: bool = True
) -> Iterator[dict[str, Any]]:
    """Turns that show a gap in the FAQ: routed clarify/none, failed the LLM guard, or whose latest feedback is
    thumbs-down or 'none of these' (withdrawn or changed feedback no longer counts), unless a curator's latest
    review settled it (``storage.reviews``: correct, out of scope, spam, or applied) -- the review view's ``is_gap``
    and ``settled``. Oldest first. Each dict has turn_id, ts, question, normalized, route, faq_id, candidates,
    guard, feedback (latest kind or None) and reasons (why the turn is listed: the view's ``gap_reasons``)."""
    where = ["t.is_gap", "NOT t.settled"]  # a reviewed turn whose verdict needs nothing more has left the inbox
    params: list[Any] = []
    if since is not None:
        where.append("t.ts >= ?")
        params.append(_since(since))
    sql = (
        "SELECT t.id, t.ts, t.question, t.normalized, t.route, t.faq_id, "
        + ("t.candidates" if candidates else "NULL")
        + ", t.guard, t.feedback, t.gap_reasons "
        f"FROM {REVIEW_VIEW} t WHERE " + " AND ".join(where) + " ORDER BY t.ts, t.turn_rowid"
    )
    for r in conn.execute(sql, params):
        tid, ts, question, normalized, route, faq_id, cands, guard, feedback, gap_reasons = tuple(r)
        reasons = gap_reasons.split()
        yield {
            "turn_id": tid,
            "ts": ts,
            "question": question,
            "normalized": normalized,
            "route": route,
            "faq_id": faq_id,
            "candidates": decode_candidates(cands) if candidates else [],
            "guard": guard,
            "feedback": feedback,
            "reasons": reasons,
        }
