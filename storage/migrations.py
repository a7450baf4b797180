"""Schema migrations for the conversation log.

Each migration is a plain function taking a ``sqlite3.Connection``, registered in order with ``@migration``.
``migrate(conn)`` applies the ones not yet recorded in ``_migrations`` and records each, in its own
``BEGIN IMMEDIATE`` transaction (SQLite DDL is transactional, so a migration is applied whole or not at all).
Never edit a migration that has shipped; add a new one.
"""
from __future__ import annotations

import datetime as _dt
import sqlite3
from typing import Callable

MigrationFn = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[MigrationFn] = []


def migration(fn: MigrationFn) -> MigrationFn:
    MIGRATIONS.append(fn)
    return fn


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _has_migrations_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone()
    return row is not None


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations recorded in this database, in the order they were applied."""
    if not _has_migrations_table(conn):
        return []
    return [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY applied_at, name")]


def migrate(conn: sqlite3.Connection, *, upto: str | None = None) -> list[str]:
    """Apply pending migrations in order; return the names applied now (empty when already up to date).

    ``upto`` stops after the migration with that name (used by tests to build a database at an older version).
    The connection must not be inside a transaction. Safe to run from several processes at once: the pending
    set is re-read under the write lock, so a migration is never applied twice.
    """
    if conn.in_transaction:
        raise RuntimeError("migrate() needs a connection outside a transaction")
    wanted: list[MigrationFn] = []
    for fn in MIGRATIONS:
        wanted.append(fn)
        if fn.__name__ == upto:
            break
    else:
        if upto is not None:
            raise ValueError(f"unknown migration {upto!r}")

    # Read-only check first: an up-to-date database needs no write lock (so opening never waits on a busy writer).
    done = set(applied_migrations(conn))
    if all(fn.__name__ in done for fn in wanted):
        return []

    applied_now: list[str] = []
    for fn in wanted:
        name = fn.__name__
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                conn.execute("COMMIT")
                continue
            fn(conn)
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, _now()))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied_now.append(name)
    return applied_now


def _run(conn: sqlite3.Connection, statements: list[str]) -> None:
    # One execute() per statement: executescript() would COMMIT the surrounding transaction.
    for sql in statements:
        conn.execute(sql)


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        [
            # key = sha256(channel|chat_id|user_hash), computed from the already pseudonymized values.
            # Raw user ids, names and usernames are never stored; a private chat's id is stored as its HMAC.
            """
            CREATE TABLE conversations (
                id INTEGER PRIMARY KEY,
                key TEXT UNIQUE NOT NULL,
                channel TEXT NOT NULL,
                chat_id TEXT,
                chat_type TEXT,
                user_hash TEXT,
                started TEXT NOT NULL
            )
            """,
            # id is Reply.turn_id (time-ordered hex). ts is ISO-8601 UTC with milliseconds, so text order = time order.
            # question/llm_raw are masked; candidates/context_ids are JSON arrays.
            """
            CREATE TABLE turns (
                id TEXT PRIMARY KEY,
                conversation_id INTEGER REFERENCES conversations(id) ON DELETE CASCADE,
                ts TEXT NOT NULL,
                channel TEXT NOT NULL,
                via TEXT,
                question TEXT,
                normalized TEXT,
                route TEXT NOT NULL,
                faq_id TEXT,
                section INTEGER,
                score REAL,
                candidates TEXT,
                context_ids TEXT,
                model TEXT,
                llm_raw TEXT,
                guard TEXT,
                answer TEXT,
                latency_ms REAL,
                knowledge_version TEXT,
                error TEXT,
                masked_id INTEGER DEFAULT 0,
                masked_phone INTEGER DEFAULT 0,
                masked_bank INTEGER DEFAULT 0
            )
            """,
            "CREATE INDEX turns_ts ON turns(ts)",
            "CREATE INDEX turns_route ON turns(route)",
            "CREATE INDEX turns_channel ON turns(channel)",
            "CREATE INDEX turns_faq_id ON turns(faq_id)",
            "CREATE INDEX turns_conversation ON turns(conversation_id)",
            """
            CREATE TABLE feedback (
                id INTEGER PRIMARY KEY,
                turn_id TEXT NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
                kind TEXT NOT NULL CHECK (kind IN ('up', 'down', 'none')),
                ts TEXT NOT NULL
            )
            """,
            "CREATE INDEX feedback_turn ON feedback(turn_id)",
            """
            CREATE TABLE reviews (
                id INTEGER PRIMARY KEY,
                turn_id TEXT NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
                status TEXT NOT NULL DEFAULT 'open',
                label TEXT,
                note TEXT,
                reviewer TEXT,
                ts TEXT NOT NULL
            )
            """,
            "CREATE INDEX reviews_turn ON reviews(turn_id)",
        ],
    )


@migration
def m002_turns_fts(conn: sqlite3.Connection) -> None:
    # Trigram tokenizer: the default (unicode61) tokenizer treats a run of Chinese characters as one token, so
    # '社保卡' would not match '电子社保卡怎么申领'. Trigram matches any substring of >= 3 characters.
    # External content table: the text lives once, in turns; triggers keep the index in step.
    # turns has a TEXT primary key, so its rowid is implicit and VACUUM may renumber it: after a VACUUM the
    # index must be rebuilt (storage.queries.purge does this).
    _run(
        conn,
        [
            """
            CREATE VIRTUAL TABLE turns_fts USING fts5(
                question, normalized, answer,
                content='turns', content_rowid='rowid', tokenize='trigram'
            )
            """,
            """
            CREATE TRIGGER turns_fts_ai AFTER INSERT ON turns BEGIN
                INSERT INTO turns_fts (rowid, question, normalized, answer)
                VALUES (new.rowid, new.question, new.normalized, new.answer);
            END
            """,
            """
            CREATE TRIGGER turns_fts_ad AFTER DELETE ON turns BEGIN
                INSERT INTO turns_fts (turns_fts, rowid, question, normalized, answer)
                VALUES ('delete', old.rowid, old.question, old.normalized, old.answer);
            END
            """,
            """
            CREATE TRIGGER turns_fts_au AFTER UPDATE ON turns BEGIN
                INSERT INTO turns_fts (turns_fts, rowid, question, normalized, answer)
                VALUES ('delete', old.rowid, old.question, old.normalized, old.answer);
                INSERT INTO turns_fts (rowid, question, normalized, answer)
                VALUES (new.rowid, new.question, new.normalized, new.answer);
            END
            """,
            # Index the rows that existed before this migration.
            "INSERT INTO turns_fts (turns_fts) VALUES ('rebuild')",
        ],
    )


@migration
def m003_feedback_withdrawn(conn: sqlite3.Connection) -> None:
    # Feedback may be taken back (a removed 👍/👎 reaction on Matrix): kind 'withdrawn', the latest row of a turn
    # counts. SQLite cannot alter a CHECK constraint, so the table is rebuilt (ids kept: they order the rows).
    _run(
        conn,
        [
            """
            CREATE TABLE feedback_new (
                id INTEGER PRIMARY KEY,
                turn_id TEXT NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
                kind TEXT NOT NULL CHECK (kind IN ('up', 'down', 'none', 'withdrawn')),
                ts TEXT NOT NULL
            )
            """,
            "INSERT INTO feedback_new (id, turn_id, kind, ts) SELECT id, turn_id, kind, ts FROM feedback",
            "DROP TABLE feedback",
            "ALTER TABLE feedback_new RENAME TO feedback",
            "CREATE INDEX feedback_turn ON feedback(turn_id)",
        ],
    )
