"""Write transactions on the conversation log: ``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any error.

Every writer on a sqlite3 connection (migrations, reviews, purge, compaction) uses ``immediate_transaction``; the
bot's log writer, on an aiosqlite connection, queues the same ``BEGIN`` / ``COMMIT`` / ``ROLLBACK`` (storage/writer.py
says why it queues them instead of awaiting each). IMMEDIATE takes the write lock at the start, so a transaction
waits for the lock (busy timeout) before doing any work instead of failing half-way when it first writes.
Connections are opened with ``isolation_level=None`` (storage.db): no implicit transactions, only these.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

BEGIN, COMMIT, ROLLBACK = "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"


@contextlib.contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the ``with`` block in one write transaction: committed when the block ends, rolled back (and the error
    raised again) when it raises -- including when the COMMIT itself fails. A failing ROLLBACK (the connection or
    disk is already broken) does not hide the original error."""
    conn.execute(BEGIN)
    try:
        yield conn
        conn.execute(COMMIT)
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute(ROLLBACK)
            except sqlite3.Error:
                pass
        raise
