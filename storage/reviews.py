"""Curators' judgements of logged turns (the ``reviews`` table): write, read, and what they mean for the inbox.

A review is one verdict on one turn, by one curator, at one time. Rows are only ever added: re-labelling a turn
adds a row and the latest one (highest id) counts; the history stays for ``logs show``.

Verdicts (``label``): ``correct`` (the reply was right), ``entry`` (should have been answered by entry ``faq_id``),
``new-entry`` (needs an entry the FAQ does not have yet), ``out-of-scope`` (the reply was right to decline),
``spam`` (abuse, tests, nonsense). ``status`` says what is left to do: ``open`` for ``entry`` / ``new-entry``
(the knowledge must change), ``closed`` for the others, ``applied`` once ``faqbot knowledge suggest --write`` has
turned the review into an alternate or a draft.

The gap inbox leaves out turns whose latest review needs nothing more (closed or applied): the review view's
``settled`` (migration m009).
Triggers (migration m003) reject an unknown verdict, ``entry`` without an entry id and reviews of unknown turns
for every writer, including Datasette's canned queries, which connect without ``foreign_keys``.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from collections.abc import Iterable
from typing import Any

from bot.answering.types import Route
from storage.db import utc_iso
from storage.queries import turn_filters
from storage.schema import REVIEW_VIEW
from storage.transactions import immediate_transaction

VERDICTS = ("correct", "entry", "new-entry", "out-of-scope", "spam")
OPEN_VERDICTS = ("entry", "new-entry")  # the knowledge has to change
STATUSES = ("open", "closed", "applied")
# Joining reviews to their turns: CROSS JOIN makes SQLite read the reviews (a few thousand) and find each turn by
# its id; with a plain JOIN it may read every turn instead, as it did on a log whose reviews table was still empty.
_REVIEWS_DRIVE = "CROSS JOIN"


class ReviewError(ValueError):
    """A review that cannot be stored (unknown verdict or turn, missing entry id); the message says why."""


def status_for(verdict: str) -> str:
    return "open" if verdict in OPEN_VERDICTS else "closed"


def check_verdict(verdict: str, faq_id: str | None) -> tuple[str, str | None]:
    """Normalise and validate a verdict and its entry id; raise ReviewError with a readable reason."""
    v = (verdict or "").strip().lower().replace("_", "-")
    aliases = {"ok": "correct", "oos": "out-of-scope", "new": "new-entry", "abuse": "spam"}
    v = aliases.get(v, v)
    if v not in VERDICTS:
        raise ReviewError(f"unknown verdict {verdict!r} (one of: {', '.join(VERDICTS)})")
    faq_id = (faq_id or "").strip() or None
    if v == "entry" and not faq_id:
        raise ReviewError("verdict 'entry' needs the entry id it should have been (--entry ID)")
    if v not in ("entry", "new-entry") and faq_id:
        raise ReviewError(f"verdict {v!r} takes no entry id")
    return v, faq_id


def add_review(
    conn: sqlite3.Connection,
    turn_id: str,
    verdict: str,
    *,
    curator: str,
    faq_id: str | None = None,
    note: str | None = None,
    when: _dt.datetime | None = None,
) -> dict[str, Any]:
    """Store one verdict on a turn (full id) and return the stored row. Needs a writable connection."""
    return add_reviews(conn, [turn_id], verdict, curator=curator, faq_id=faq_id, note=note, when=when)[0]


def add_reviews(
    conn: sqlite3.Connection,
    turn_ids: Iterable[str],
    verdict: str,
    *,
    curator: str,
    faq_id: str | None = None,
    note: str | None = None,
    when: _dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """The same verdict on several turns, in one transaction (all or nothing)."""
    verdict, faq_id = check_verdict(verdict, faq_id)
    curator = (curator or "").strip()
    if not curator:
        raise ReviewError("a review needs the curator's name")
    note = (note or "").strip() or None
    ts = utc_iso(when)
    status = status_for(verdict)
    out = []
    with immediate_transaction(conn):
        for turn_id in turn_ids:
            if conn.execute("SELECT 1 FROM turns WHERE id = ?", (turn_id,)).fetchone() is None:
                raise ReviewError(f"no turn with id {turn_id!r}")
            cur = conn.execute(
                "INSERT INTO reviews (turn_id, status, label, faq_id, note, reviewer, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (turn_id, status, verdict, faq_id, note, curator, ts),
            )
            out.append(
                {
                    "id": cur.lastrowid,
                    "turn_id": turn_id,
                    "verdict": verdict,
                    "faq_id": faq_id,
                    "status": status,
                    "note": note,
                    "curator": curator,
                    "ts": ts,
                }
            )
    return out


def history(conn: sqlite3.Connection, turn_id: str) -> list[dict[str, Any]]:
    """Every review of one turn, oldest first (the last one counts)."""
    return [
        dict(zip(("id", "verdict", "faq_id", "status", "note", "curator", "ts"), tuple(r), strict=False))
        for r in conn.execute(
            "SELECT id, label, faq_id, status, note, reviewer, ts FROM reviews WHERE turn_id = ? ORDER BY id",
            (turn_id,),
        )
    ]


def latest(conn: sqlite3.Connection, turn_id: str) -> dict[str, Any] | None:
    rows = history(conn, turn_id)
    return rows[-1] if rows else None


def latest_reviews(
    conn: sqlite3.Connection,
    *,
    verdicts: Iterable[str] | None = None,
    status: str | None = None,
    since: str | None = None,
) -> list[dict[str, Any]]:
    """The latest review of every reviewed turn with the turn's question and route, oldest review first.

    ``verdicts`` / ``status`` filter on the latest review; ``since`` (ISO timestamp) on the review's time.
    """
    where = ["r.id = t.review_id"]  # the latest review of its turn
    params: list[Any] = []
    if verdicts is not None:
        vs = list(verdicts)
        where.append(f"r.label IN ({', '.join('?' * len(vs))})")
        params += vs
    if status is not None:
        where.append("r.status = ?")
        params.append(status)
    if since is not None:
        where.append("r.ts >= ?")
        params.append(since)
    sql = (
        "SELECT r.id, r.turn_id, r.label, r.faq_id, r.status, r.note, r.reviewer, r.ts, "
        "t.question, t.normalized, t.route, t.faq_id, t.section, t.via, t.ts, "
        "(t.masked_id + t.masked_phone + t.masked_bank) "
        f"FROM reviews r {_REVIEWS_DRIVE} {REVIEW_VIEW} t ON t.id = r.turn_id "
        "WHERE " + " AND ".join(where) + " ORDER BY r.id"
    )
    keys = (
        "id",
        "turn_id",
        "verdict",
        "faq_id",
        "status",
        "note",
        "curator",
        "ts",
        "question",
        "normalized",
        "route",
        "turn_faq_id",
        "turn_section",
        "via",
        "turn_ts",
        "masked",
    )
    return [dict(zip(keys, tuple(row), strict=False)) for row in conn.execute(sql, params)]


def mark_applied(conn: sqlite3.Connection, review_ids: Iterable[int]) -> int:
    """Set ``status = 'applied'`` on these reviews (their suggestion was written); returns how many changed."""
    ids = list(review_ids)
    if not ids:
        return 0
    with immediate_transaction(conn):
        n = 0
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            n += conn.execute(
                f"UPDATE reviews SET status = 'applied' WHERE status = 'open' AND id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ).rowcount
    return n


def review_stats(conn: sqlite3.Connection, since: str | None = None) -> dict[str, Any]:
    """Review numbers over the turns since ``since`` (ISO timestamp; all when None).

    Keys: reviewed (turns with a review), by_verdict (latest verdict counts), open (latest review still waits for
    a knowledge change), direct_reviewed / direct_confirmed (route-faq turns reviewed / of those labelled
    correct). Read from the reviews side (a few thousand human verdicts), so the cost does not grow with the log.
    """
    where, params = "", []
    if since is not None:
        where, params = " AND t.ts >= ?", [since]
    by_verdict: dict[str, int] = {}
    status_counts: dict[str, int] = {}
    direct_reviewed = direct_confirmed = 0
    sql = (
        f"SELECT r.label, r.status, t.route, count(*) "
        f"FROM reviews r {_REVIEWS_DRIVE} {REVIEW_VIEW} t ON t.id = r.turn_id "
        "WHERE r.id = t.review_id" + where + " GROUP BY r.label, r.status, t.route"
    )
    for label, status, route, n in conn.execute(sql, params):
        by_verdict[label] = by_verdict.get(label, 0) + n
        status_counts[status] = status_counts.get(status, 0) + n
        if route == Route.FAQ:
            direct_reviewed += n
            if label == "correct":
                direct_confirmed += n
    return {
        "reviewed": sum(by_verdict.values()),
        "by_verdict": dict(sorted(by_verdict.items(), key=lambda kv: (-kv[1], kv[0]))),
        "open": status_counts.get("open", 0),
        "direct_reviewed": direct_reviewed,
        "direct_confirmed": direct_confirmed,
    }


QUEUE_PAGE = 500  # turns a review session loads at once (a year of traffic has a million unreviewed turns)


def _queue_parts(route, since, channel, feedback) -> tuple[list[tuple[str, list[str]]], list[Any]]:
    where, params = turn_filters(route=route, since=since, channel=channel, feedback=feedback)
    # Greetings and empty input normalize to nothing: no question to judge. Button taps are no questions either.
    base = ["t.review_id IS NULL", "coalesce(t.normalized, '') <> ''", "coalesce(t.via, 'text') = 'text'", *where]
    return [("gap", ["t.is_gap", *base]), ("filter", ["NOT t.is_gap", *base])], params


def queue(
    conn: sqlite3.Connection,
    *,
    route: str | None = None,
    since: _dt.datetime | str | None = None,
    channel: str | None = None,
    feedback: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Turns waiting for a review, selected like ``logs list`` (route, since, channel, feedback): unreviewed gaps
    first, then the other unreviewed turns; newest first within each part; at most ``limit`` (default
    QUEUE_PAGE). Returns [{turn_id, part: 'gap' | 'filter'}]."""
    limit = limit if limit and limit > 0 else QUEUE_PAGE
    parts, params = _queue_parts(route, since, channel, feedback)
    out: list[dict[str, Any]] = []
    for part, conds in parts:
        rest = limit - len(out)
        if rest <= 0:
            break
        sql = (
            f"SELECT t.id FROM {REVIEW_VIEW} t WHERE " + " AND ".join(conds) + " ORDER BY t.ts DESC, t.id DESC LIMIT ?"
        )
        out += [{"turn_id": tid, "part": part} for (tid,) in conn.execute(sql, [*params, rest])]
    return out


def queue_size(
    conn: sqlite3.Connection,
    *,
    route: str | None = None,
    since: _dt.datetime | str | None = None,
    channel: str | None = None,
    feedback: str | None = None,
) -> int:
    """How many turns ``queue`` would offer without a limit."""
    parts, params = _queue_parts(route, since, channel, feedback)
    return sum(
        conn.execute(f"SELECT count(*) FROM {REVIEW_VIEW} t WHERE " + " AND ".join(conds), params).fetchone()[0]
        for _, conds in parts
    )


def open_gap_turns(conn: sqlite3.Connection, questions: Iterable[str]) -> list[str]:
    """Ids of the gap turns still in the inbox (not settled by a review) that asked one of ``questions`` (as the
    gap inbox shows them: the question, or the normalized text when the question is empty). Newest first."""
    qs = sorted({q for q in questions if q})
    out: list[str] = []
    for i in range(0, len(qs), 500):
        chunk = qs[i : i + 500]
        out += [
            tid
            for (tid,) in conn.execute(
                f"SELECT t.id FROM {REVIEW_VIEW} t WHERE t.is_gap AND NOT t.settled"
                + " AND coalesce(nullif(trim(t.question), ''), t.normalized) IN ("
                + ", ".join("?" * len(chunk))
                + ")"
                " ORDER BY t.ts DESC, t.id DESC",
                chunk,
            )
        ]
    return out
