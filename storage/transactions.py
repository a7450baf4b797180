"""Write transactions on the conversation log: ``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any error.

Every writer uses one of these two: ``immediate_transaction`` on a sqlite3 connection (migrations, reviews,
purge, compaction) and ``async_immediate_transaction``, the same on the bot's aiosqlite connection (the log
writer). IMMEDIATE takes the write lock at the start, so a transaction waits for the lock (busy timeout) before
doing any work instead of failing half-way when it first writes. Connections are opened with ``isolation_level=None`` (storage.db): no
implicit transactions, only these.
"""
from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotation: review commands need not load aiosqlite
    import aiosqlite

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


@contextlib.asynccontextmanager
async def async_immediate_transaction(conn: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """``immediate_transaction`` for an aiosqlite connection (aiosqlite's public ``execute``)."""
    await conn.execute(BEGIN)
    try:
        yield conn
        await conn.execute(COMMIT)
    except BaseException:
        if conn.in_transaction:
            try:
                await conn.execute(ROLLBACK)
            except sqlite3.Error:
                pass
        raise
