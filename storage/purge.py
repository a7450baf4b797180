"""Retention: delete turns older than a cutoff while the bot keeps writing (``faqbot logs purge``).

Work is done in short write transactions so the bot's writer never waits long for the lock. Each batch is one
``BEGIN IMMEDIATE`` transaction; its size follows the lock time the previous batch measured
(``next_batch_size``), so a slow or busy machine gets smaller batches and a fast one larger. The WAL checkpoint
after each batch runs outside the lock and is timed on its own.
"""

from __future__ import annotations

import datetime as _dt
import functools
import sqlite3
import time
from typing import Any

from storage.db import utc_iso
from storage.migrations import BULK_DELETE_TABLE, LATENCY_BUCKET_SQL
from storage.transactions import immediate_transaction

# A batch aims at this share of ``max_lock_s``: a batch costs roughly its size times the last batch's cost a turn,
# and the leeway absorbs a batch that meets colder pages or a busier CPU than the one before it.
TARGET_SHARE = 0.3
FIRST_BATCH = 200  # turns; about 10-20 ms on the 2-core VM, so the first measurement is cheap on any machine
MIN_BATCH, MAX_BATCH = 10, 20_000
MIN_VACUUM_STEP, MAX_VACUUM_STEP = 20, 20_000  # pages for one PRAGMA incremental_vacuum step
# The bot's writer waits for the lock in SQLite's busy handler, which sleeps between tries -- 1, 2, 5, 10, 15, 20, 25,
# 25, 25, 50, 50, then 100 ms (sqliteDefaultBusyCallback) -- so it tries again within the delay it has reached. With
# the next batch starting right after a checkpoint, the lock was free only for a few ms between two batches and a
# waiting writer rarely tried then (answer -> committed p99 1.5 s during a purge at 1M turns, measured). So after a
# batch that held the lock L seconds, the lock stays free for the delay a writer that has waited L has reached.
_BUSY_DELAYS_MS = (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100)
GAP_MARGIN_S = 0.005


def writer_gap(lock_s: float) -> float:
    """Seconds to leave the lock free after holding it ``lock_s``: long enough that a writer that started waiting
    during that time tries again meanwhile (SQLite's busy-handler delays), plus a margin."""
    waited_ms = 0
    for delay in _BUSY_DELAYS_MS:
        if waited_ms + delay > lock_s * 1000:
            return delay / 1000 + GAP_MARGIN_S
        waited_ms += delay
    return _BUSY_DELAYS_MS[-1] / 1000 + GAP_MARGIN_S


def next_batch_size(
    size: int, took_s: float, target_s: float, *, smallest: int = MIN_BATCH, largest: int = MAX_BATCH
) -> int:
    """The size of the next batch after one of ``size`` items held the lock ``took_s`` seconds.

    Scaled by ``target_s / took_s`` (a batch that took twice the target halves the next one), but growing by at
    most half per batch: one quick batch (warm pages, an idle CPU) is weak evidence, while one slow batch is reason
    enough to shrink at once. Kept within [smallest, largest].
    """
    if took_s <= 0:
        scaled = size * 1.5
    else:
        scaled = min(size * target_s / took_s, size * 1.5)
    return max(smallest, min(largest, int(scaled)))


def turns_before(conn: sqlite3.Connection, cutoff: str) -> int:
    """How many turns are older than ``cutoff`` (ISO UTC): what a purge with that cutoff deletes."""
    return conn.execute("SELECT count(*) FROM turns WHERE ts < ?", (cutoff,)).fetchone()[0]


def purge(conn: sqlite3.Connection, older_than: _dt.timedelta, **kwargs: Any) -> int:
    """``purge_old`` returning only the number of turns deleted."""
    return int(purge_old(conn, older_than, **kwargs)["deleted"])


def purge_old(
    conn: sqlite3.Connection,
    older_than: _dt.timedelta,
    *,
    max_lock_s: float = 0.2,
    vacuum: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Delete turns older than ``older_than`` (with their feedback and reviews) and conversations left without
    turns, in batches that each hold the write lock for about ``TARGET_SHARE * max_lock_s``.

    Space: on a log with ``auto_vacuum = INCREMENTAL`` (every log created since migration m004) the freed pages are
    handed back to the file system in small steps; otherwise they stay in the file and new turns reuse them.
    ``vacuum=True`` runs a full VACUUM instead (it locks the log for its whole duration: for a quiet moment), which
    also switches an older log to incremental auto-vacuum.

    Needs a writable connection outside a transaction. Returns {deleted, batches, max_lock_ms (the longest time
    one transaction held the write lock), seconds, vacuum, ...}. ``progress(n)`` is called after each batch with the
    number of turns it deleted.
    """
    if older_than.total_seconds() < 0:
        raise ValueError("older_than must not be negative")
    if conn.in_transaction:
        raise RuntimeError("purge needs a connection outside a transaction")
    cutoff = utc_iso(_dt.datetime.now(_dt.UTC) - older_than)
    # SQLite's auto-checkpoint runs inside COMMIT's call (after the lock is released), so timing a batch would
    # count the checkpoint's disk writes as lock time and shrink batches for the wrong reason. It is done
    # explicitly after each transaction instead -- as often as the default does here (a batch writes more than
    # its 1,000 pages), which the bot's writer needs: checkpointing every 20,000 turns instead left the writer
    # checkpointing a large WAL inside its own commits (answer -> committed p99 4.4 s vs 0.24 s at 1M turns).
    autocheckpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    # Without foreign_keys: purge deletes a turn's feedback and reviews itself in the turn's transaction, and checks
    # that a conversation has no turn left before deleting it; the checks the pragma adds were ~15% of a delete
    # (and a cascade from a conversation would scan turns: turns.conversation_id has no index since m010). The
    # pragma cannot change inside a transaction, so it is set around the whole purge.
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        return _Purge(conn, max_lock_s).run(cutoff, vacuum=vacuum, progress=progress)
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint)}")
        conn.execute(f"PRAGMA foreign_keys = {int(foreign_keys)}")


class _Purge:
    def __init__(self, conn: sqlite3.Connection, max_lock_s: float):
        self.conn = conn
        self.max_lock_s = max_lock_s
        self.target = max_lock_s * TARGET_SHARE
        self.locks: list[float] = []  # seconds each write transaction held the lock
        self.checkpoint_s = 0.0
        self.pause_s = 0.0

    def _transaction(self, work) -> Any:
        """Run ``work()`` in one BEGIN IMMEDIATE transaction; record how long it held the lock; checkpoint after."""
        with immediate_transaction(self.conn):
            t0 = time.perf_counter()  # after BEGIN IMMEDIATE: waiting for the lock (busy_timeout) is not holding it
            out = work()
        self.locks.append(time.perf_counter() - t0)  # COMMIT included
        self._between_transactions()
        return out

    def _between_transactions(self) -> None:
        """Copy the WAL back into the database (PASSIVE: without the write lock, so the bot's writer goes on), then
        leave the lock free for the rest of ``writer_gap`` of the last lock."""
        t0 = time.perf_counter()
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        took = time.perf_counter() - t0
        self.checkpoint_s += took
        gap = writer_gap(self.locks[-1])
        if took < gap:
            time.sleep(gap - took)
            self.pause_s += gap - took

    def _delete_batch(self, cutoff: str, size: int) -> int:
        conn = self.conn
        # The oldest `size` turns (ts index); explicit deletes are correct even without foreign_keys=ON.
        conn.execute("DELETE FROM temp._purge_batch")
        conn.execute(
            "INSERT INTO temp._purge_batch (rid) SELECT rowid FROM turns WHERE ts < ? ORDER BY ts LIMIT ?",
            (cutoff, size),
        )
        chosen = "SELECT t.id FROM turns t WHERE t.rowid IN (SELECT rid FROM temp._purge_batch)"
        conn.execute(f"DELETE FROM feedback WHERE turn_id IN ({chosen})")  # its trigger moves the feedback counts
        conn.execute(f"DELETE FROM reviews WHERE turn_id IN ({chosen})")
        _subtract_batch_from_summary(conn)
        conn.execute(f"INSERT INTO {BULK_DELETE_TABLE} (id) VALUES (1)")
        n = conn.execute("DELETE FROM turns WHERE rowid IN (SELECT rid FROM temp._purge_batch)").rowcount
        conn.execute(f"DELETE FROM {BULK_DELETE_TABLE}")
        return n

    def _delete_orphan_conversations(self, chunk: int = 2000) -> None:
        """Delete the conversations no turn refers to (any more).

        turns.conversation_id has no index (migration m010), so the turns still referring to a conversation are
        found in one read of the table, outside any write lock; turns the bot logs meanwhile have a higher rowid than
        any turn there was then (purge deleted only older ones) and are checked again inside each delete."""
        conn = self.conn
        conn.execute("DELETE FROM temp._purge_convs")
        conn.execute("INSERT INTO temp._purge_convs (id) SELECT id FROM conversations")
        last = conn.execute("SELECT coalesce(max(rowid), 0) FROM turns").fetchone()[0]
        # Writes only the temp database: a read of the log, which never blocks the bot's writer.
        conn.execute("DELETE FROM temp._purge_convs WHERE id IN (SELECT conversation_id FROM turns)")
        # foreign_keys is off (purge_old): deleting a conversation does not look for turns to cascade to; the
        # NOT IN below is what makes it safe.
        lo = -1
        while True:
            ids = [
                r[0]
                for r in conn.execute("SELECT id FROM temp._purge_convs WHERE id > ? ORDER BY id LIMIT ?", (lo, chunk))
            ]
            if not ids:
                break
            lo = ids[-1]
            self._transaction(
                functools.partial(
                    conn.execute,
                    "DELETE FROM conversations WHERE id IN (SELECT id FROM temp._purge_convs WHERE id BETWEEN ? AND ?) "
                    "AND id NOT IN (SELECT conversation_id FROM turns WHERE rowid > ? AND conversation_id IS NOT NULL)",
                    (ids[0], ids[-1], last),
                )
            )

    def run(self, cutoff: str, *, vacuum: bool, progress: Any) -> dict[str, Any]:
        conn = self.conn
        t_start = time.perf_counter()
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _purge_batch (rid INTEGER PRIMARY KEY)")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _purge_convs (id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM temp._purge_convs")
        size, deleted, batches, sizes = FIRST_BATCH, 0, 0, []
        while True:
            n = self._transaction(functools.partial(self._delete_batch, cutoff, size))
            if n <= 0:
                break
            deleted += n
            batches += 1
            sizes.append(size)
            if progress:
                progress(n)
            size = next_batch_size(size, self.locks[-1], self.target)
        if deleted:  # a purge that deleted nothing leaves the conversations (and skips reading every turn)
            self._delete_orphan_conversations()
        t_deleted = time.perf_counter()
        delete_lock = max(self.locks, default=0.0)
        n_delete_locks = len(self.locks)
        mode = "none"
        if vacuum:
            _full_vacuum(conn)
            mode = "full"
        elif conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:  # INCREMENTAL
            pages = 100
            while conn.execute("PRAGMA freelist_count").fetchone()[0] > 0:
                self._transaction(functools.partial(_free_pages, conn, pages))
                pages = next_batch_size(
                    pages, self.locks[-1], self.target, smallest=MIN_VACUUM_STEP, largest=MAX_VACUUM_STEP
                )
            mode = "incremental"
        vacuum_locks = self.locks[n_delete_locks:]
        # Hand the WAL's space back too. A TRUNCATE checkpoint holds the write lock while it waits for readers, so it
        # may wait only briefly; if a long review query is reading, the WAL stays and is reused (the size limit makes
        # it shrink when it is next reset).
        busy = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        conn.execute("PRAGMA journal_size_limit = 67108864")
        conn.execute(f"PRAGMA busy_timeout = {int(self.max_lock_s * 500)}")
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(busy)}")
        ms = lambda s: round(s * 1000, 1)  # noqa: E731
        return {
            "deleted": deleted,
            "batches": batches,
            "max_lock_ms": ms(max(self.locks, default=0.0)),
            "seconds": round(time.perf_counter() - t_start, 3),
            "vacuum": mode,
            "delete_seconds": round(t_deleted - t_start, 3),
            "vacuum_seconds": round(time.perf_counter() - t_deleted, 3),
            "checkpoint_seconds": round(self.checkpoint_s, 3),
            "pause_seconds": round(self.pause_s, 3),
            "lock_seconds": round(sum(self.locks), 3),
            "max_delete_lock_ms": ms(delete_lock),
            "max_vacuum_lock_ms": ms(max(vacuum_locks, default=0.0)),
            "batch_sizes": {
                "first": sizes[0] if sizes else 0,
                "min": min(sizes, default=0),
                "max": max(sizes, default=0),
                "mean": round(deleted / batches) if batches else 0,
            },
        }


def _free_pages(conn: sqlite3.Connection, pages: int) -> None:
    """Hand up to ``pages`` free pages back to the file system, in the open transaction.

    The pragma frees one page per step and its rows have no columns, so Python's execute() steps it once: one page
    per execute(), whatever the argument (measured). executescript() would step it through, but it commits an open
    transaction first, and its own would then be timed with the wait for the lock (up to 521 ms measured while the
    bot's writer committed); one execute() a page costs the same time (0.33 vs 0.35 s for 12,858 pages)."""
    for _ in range(int(pages)):
        conn.execute("PRAGMA incremental_vacuum(1)")


def _subtract_batch_from_summary(conn: sqlite3.Connection) -> None:
    """Take the turns in temp._purge_batch (their feedback already deleted) out of the daily summary, grouped."""
    conn.execute(
        "UPDATE stats_daily SET turns = turns - b.n, guard_failures = guard_failures - b.g, errors = errors - b.e "
        "FROM (SELECT substr(t.ts, 1, 10) AS day, t.channel, t.route, coalesce(t.faq_id, '') AS faq_id, count(*) AS n, "
        "      sum(coalesce(t.guard LIKE 'fail%', 0)) AS g, sum(t.error IS NOT NULL) AS e "
        "      FROM turns t WHERE t.rowid IN (SELECT rid FROM temp._purge_batch) GROUP BY 1, 2, 3, 4) AS b "
        "WHERE (stats_daily.day, stats_daily.channel, stats_daily.route, stats_daily.faq_id) "
        "    = (b.day, b.channel, b.route, b.faq_id)"
    )
    conn.execute(
        "UPDATE stats_latency SET n = stats_latency.n - b.cnt "
        f"FROM (SELECT substr(t.ts, 1, 10) AS day, {LATENCY_BUCKET_SQL.format(x='t.latency_ms')} AS bucket, "
        "      count(*) AS cnt FROM turns t WHERE t.rowid IN (SELECT rid FROM temp._purge_batch) "
        "      AND t.latency_ms IS NOT NULL GROUP BY 1, 2) AS b "
        "WHERE (stats_latency.day, stats_latency.bucket) = (b.day, b.bucket)"
    )


def _full_vacuum(conn: sqlite3.Connection) -> None:
    """VACUUM (switching the log to incremental auto-vacuum), then check the search index against the table."""
    # Merge the index segments first, so VACUUM can hand their space back too.
    conn.execute("INSERT INTO turns_fts (turns_fts) VALUES ('optimize')")
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")  # cannot run inside a transaction
    # turns has a TEXT primary key, so its rowid (which the external-content index refers to) is implicit and
    # VACUUM is allowed to renumber it. Check the index against the table and rebuild it if they disagree.
    try:
        conn.execute("INSERT INTO turns_fts (turns_fts, rank) VALUES ('integrity-check', 1)")
    except sqlite3.DatabaseError:
        conn.execute("INSERT INTO turns_fts (turns_fts) VALUES ('rebuild')")
