"""Opening the conversation log database: pragmas, migrations, timestamps.

``open_db`` (async, aiosqlite) is for the bot's writer; ``open_db_sync`` (sqlite3) for CLI review queries.
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import sqlite3
from pathlib import Path

import aiosqlite

from storage.migrations import MIGRATIONS, applied_migrations, migrate

__all__ = [
    "open_db",
    "open_db_sync",
    "migrate",
    "applied_migrations",
    "MIGRATIONS",
    "utc_iso",
    "BUSY_TIMEOUT_MS",
]

BUSY_TIMEOUT_MS = 5000


def utc_iso(when: _dt.datetime | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a 'Z', e.g. '2025-03-01T08:15:02.117Z'.

    Every timestamp in the log uses this one format, so comparing the text compares the time.
    A naive datetime is taken as UTC.
    """
    if when is None:
        when = _dt.datetime.now(_dt.timezone.utc)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    else:
        when = when.astimezone(_dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _pragmas(busy_timeout_ms: int, readonly: bool) -> list[str]:
    stmts = [f"PRAGMA busy_timeout = {int(busy_timeout_ms)}"]
    if not readonly:
        # Before the first table exists this makes a new log hand freed pages back in small steps (`logs purge`);
        # on an existing log it only takes effect at the next VACUUM (`logs purge --vacuum`).
        stmts.append("PRAGMA auto_vacuum = INCREMENTAL")
        # WAL: readers (review CLI, Datasette) never block the bot's writer, and the writer never blocks them.
        stmts.append("PRAGMA journal_mode = WAL")
    stmts += [
        # FULL, not NORMAL: in WAL mode NORMAL can lose the last commits on power loss, and a help desk log must
        # not lose turns it has acknowledged. The cost is one extra fsync per commit, small because the writer
        # batches many rows per transaction.
        "PRAGMA synchronous = FULL",
        "PRAGMA foreign_keys = ON",
    ]
    return stmts


def _uri(path: Path, readonly: bool) -> str:
    return path.resolve().as_uri() + ("?mode=ro" if readonly else "")


def _connect_sync(path: Path, *, readonly: bool, busy_timeout_ms: int) -> sqlite3.Connection:
    if not readonly:
        path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; writers say BEGIN IMMEDIATE themselves.
    conn = sqlite3.connect(_uri(path, readonly), uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        for sql in _pragmas(busy_timeout_ms, readonly):
            conn.execute(sql)
    except BaseException:
        conn.close()
        raise
    return conn


def open_db_sync(
    path: str | Path, readonly: bool = True, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """A sqlite3 connection with rows as ``sqlite3.Row``. Read-only by default (review queries).

    With ``readonly=False`` the parent folder is created and pending migrations run.
    A read-only open of a missing file raises ``FileNotFoundError``.
    """
    path = Path(path)
    if readonly and not path.exists():
        raise FileNotFoundError(f"no conversation log at {path}")
    conn = _connect_sync(path, readonly=readonly, busy_timeout_ms=busy_timeout_ms)
    try:
        if not readonly:
            migrate(conn)
    except BaseException:
        conn.close()
        raise
    conn.row_factory = sqlite3.Row
    return conn


def _migrate_path(path: Path, busy_timeout_ms: int) -> None:
    conn = _connect_sync(path, readonly=False, busy_timeout_ms=busy_timeout_ms)
    try:
        migrate(conn)
    finally:
        conn.close()


async def open_db(
    path: str | Path, *, readonly: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> aiosqlite.Connection:
    """An aiosqlite connection in autocommit mode (``isolation_level=None``) with the log's pragmas set.

    Unless ``readonly``, creates the parent folder and applies pending migrations first (on a short-lived
    sqlite3 connection in a worker thread, so the event loop never waits on the schema lock).
    """
    path = Path(path)
    if readonly and not path.exists():
        raise FileNotFoundError(f"no conversation log at {path}")
    if not readonly:
        await asyncio.to_thread(_migrate_path, path, busy_timeout_ms)
    conn = await aiosqlite.connect(
        _uri(path, readonly), uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000
    )
    try:
        for sql in _pragmas(busy_timeout_ms, readonly):
            await conn.execute(sql)
    except BaseException:
        await conn.close()
        raise
    conn.row_factory = aiosqlite.Row
    return conn
