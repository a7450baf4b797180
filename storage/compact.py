"""Convert an existing log to the compact trace format in place (`faqbot logs compact`).

Rows written before migration m004 keep their candidates as a list of objects with keys and the entry's question
(storage.trace). This rewrites them in batches, each its own short ``BEGIN IMMEDIATE`` transaction, so the bot keeps
writing meanwhile; an interrupted run loses nothing and the next run picks up the rows still in the old format.
The file does not shrink by itself: freed pages are reused by new turns, or handed back by ``VACUUM`` (README).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from storage.trace import OLD_FORMAT_PREFIX, compact_candidates
from storage.transactions import immediate_transaction

_OLD = "substr(candidates, 1, 2) = ?"


def pending_rows(conn: sqlite3.Connection) -> int:
    """Turns still in the old candidates format."""
    return conn.execute(f"SELECT count(*) FROM turns WHERE {_OLD}", (OLD_FORMAT_PREFIX,)).fetchone()[0]


def compact_log(
    conn: sqlite3.Connection, *, batch: int = 2000, progress: Callable[[int], None] | None = None
) -> dict[str, int | float]:
    """Rewrite old-format rows in batches of ``batch`` (rowid order); ``progress(n)`` after each batch.

    Needs a writable connection outside a transaction. Returns {converted, batches, bytes_before, bytes_after,
    seconds} (bytes: the candidates text of the converted rows)."""
    if conn.in_transaction:
        raise RuntimeError("compact_log() needs a connection outside a transaction")
    t0 = time.perf_counter()
    last = -(1 << 63)
    converted = batches = before = after = 0
    while True:
        rows = conn.execute(
            f"SELECT rowid, candidates FROM turns WHERE rowid > ? AND {_OLD} ORDER BY rowid LIMIT ?",
            (last, OLD_FORMAT_PREFIX, int(batch)),
        ).fetchall()
        if not rows:
            break
        updates = [(compact_candidates(text), rowid) for rowid, text in rows]
        with immediate_transaction(conn):
            conn.executemany("UPDATE turns SET candidates = ? WHERE rowid = ?", updates)
        last = rows[-1][0]
        converted += len(rows)
        batches += 1
        before += sum(len(t.encode()) for _, t in rows)
        after += sum(len(t.encode()) for t, _ in updates)
        if progress:
            progress(len(rows))
    return {
        "converted": converted,
        "batches": batches,
        "bytes_before": before,
        "bytes_after": after,
        "seconds": time.perf_counter() - t0,
    }
