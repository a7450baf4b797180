"""Opening the conversation log database: pragmas, migrations, timestamps.

``open_db`` (async, aiosqlite) is for the bot's writer; ``open_db_sync`` (sqlite3) for CLI review queries.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import os
import sqlite3
from pathlib import Path

import aiosqlite

from storage.migrations import MIGRATIONS, applied_migrations, migrate
from storage.safety import check_readable_file, prepare_private_db

__all__ = [
    "open_db",
    "open_db_sync",
    "migrate",
    "applied_migrations",
    "MIGRATIONS",
    "utc_iso",
    "BUSY_TIMEOUT_MS",
    "LogSchemaError",
    "check_schema",
]

BUSY_TIMEOUT_MS = 5000


def utc_iso(when: _dt.datetime | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a 'Z', e.g. '2025-03-01T08:15:02.117Z'.

    Every timestamp in the log uses this one format, so comparing the text compares the time.
    A naive datetime is taken as UTC.
    """
    if when is None:
        when = _dt.datetime.now(_dt.UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    else:
        when = when.astimezone(_dt.UTC)
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


class LogSchemaError(Exception):
    """The file is not a faqbot conversation log (another application's database, an empty file), or was written by
    a newer faqbot and must not be written by this one. The message is one line for the user."""


_WHAT = "conversation log"


def _uri(path: Path, readonly: bool, *, immutable: bool = False) -> str:
    uri = path.resolve().as_uri()
    if immutable:  # nothing can be writing it: the folder is read-only, so no -wal/-shm can exist or be created
        return uri + "?mode=ro&immutable=1"
    return uri + ("?mode=ro" if readonly else "")


def _check_files(path: Path, readonly: bool, create: bool) -> None:
    """The safety checks of storage.safety before SQLite opens ``path`` (and may create its -wal/-shm)."""
    if readonly:
        if not check_readable_file(path, _WHAT):
            raise FileNotFoundError(f"no conversation log at {path}")
        return
    if not prepare_private_db(path, _WHAT, create=create):
        raise FileNotFoundError(f"no conversation log at {path}")


def check_schema(conn: sqlite3.Connection, path: Path, *, writing: bool, allow_empty: bool) -> None:
    """Refuse what is not a faqbot log, and (for ``writing``) a log with migrations this version does not know.

    ``allow_empty``: a database without any table may become a log (the bot creating its log); review and purge
    pass False, so pointing them at an empty or foreign file changes nothing."""
    tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    if "_migrations" not in tables:
        if not tables and allow_empty:
            return
        what = f"it has other tables: {', '.join(tables[:5])}" if tables else "it is empty"
        raise LogSchemaError(f"{path} is not a faqbot conversation log ({what}); nothing was changed")
    if writing:
        known = {fn.__name__ for fn in MIGRATIONS}
        unknown = [n for n in applied_migrations(conn) if n not in known]
        if unknown:
            raise LogSchemaError(
                f"{path} was written by a newer faqbot (its schema has migration {unknown[-1]}, unknown to this "
                "version); refusing to write to it -- upgrade faqbot (read-only review still works)"
            )


def _connect_sync(path: Path, *, readonly: bool, busy_timeout_ms: int, create: bool = True) -> sqlite3.Connection:
    _check_files(path, readonly, create)
    # isolation_level=None: no implicit transactions; writers say BEGIN IMMEDIATE themselves.
    conn = sqlite3.connect(_uri(path, readonly), uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        try:
            # The schema is checked before any pragma: journal_mode=WAL alone would write to a foreign file.
            check_schema(conn, path, writing=not readonly, allow_empty=not readonly and create)
        except sqlite3.OperationalError:
            if not (readonly and _read_only_folder(path)):
                raise
            # A WAL log in a folder this user cannot write: SQLite cannot create the -shm it needs for a plain
            # read-only open. Nobody can be writing it there, so reading it as immutable is safe.
            conn.close()
            conn = sqlite3.connect(_uri(path, True, immutable=True), uri=True, isolation_level=None)
            check_schema(conn, path, writing=False, allow_empty=False)
        for sql in _pragmas(busy_timeout_ms, readonly):
            conn.execute(sql)
    except BaseException:
        conn.close()
        raise
    return conn


def _read_only_folder(path: Path) -> bool:
    return not os.access(path.parent, os.W_OK) and not Path(f"{path}-shm").exists()


def open_db_sync(
    path: str | Path, readonly: bool = True, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS, create: bool = True
) -> sqlite3.Connection:
    """A sqlite3 connection with rows as ``sqlite3.Row``. Read-only by default (review queries).

    Every open checks the files first (storage.safety) and that the database is a faqbot log (``LogSchemaError``
    otherwise). With ``readonly=False`` the folder is created (0700), the file too if ``create`` (0600), and
    pending migrations run; a log with migrations unknown to this version is refused. A read-only open of a
    missing file raises ``FileNotFoundError``.
    """
    path = Path(path)
    conn = _connect_sync(path, readonly=readonly, busy_timeout_ms=busy_timeout_ms, create=create)
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
    if readonly:
        _check_files(path, True, False)
    else:
        await asyncio.to_thread(_migrate_path, path, busy_timeout_ms)
    conn = await aiosqlite.connect(_uri(path, readonly), uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        for sql in _pragmas(busy_timeout_ms, readonly):
            await conn.execute(sql)
    except BaseException:
        await conn.close()
        raise
    conn.row_factory = aiosqlite.Row
    return conn
