"""Schema migrations and connection settings of the conversation log (real SQLite files)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from storage import queries
from storage.db import open_db, open_db_sync, utc_iso
from storage.migrations import MIGRATIONS, applied_migrations, migrate

ALL = [fn.__name__ for fn in MIGRATIONS]


def _connect(path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger', 'index')")}


def test_migrations_are_numbered_in_order():
    assert ALL[:2] == ["m001_initial", "m002_turns_fts"]
    assert ALL == sorted(ALL)


def test_migrate_empty_db_then_noop(tmp_path):
    path = tmp_path / "log.db"
    conn = _connect(path)
    assert migrate(conn) == ALL
    names = _tables(conn)
    for name in ("conversations", "turns", "feedback", "reviews", "turns_fts", "_migrations"):
        assert name in names
    for name in ("turns_ts", "turns_fts_ai", "turns_fts_ad", "turns_fts_au", "stats_daily", "stats_latency"):
        assert name in names
    rows = conn.execute("SELECT name, applied_at FROM _migrations ORDER BY name").fetchall()
    assert [r[0] for r in rows] == ALL
    assert all(r[1].startswith("20") for r in rows)
    before = conn.execute("SELECT * FROM _migrations ORDER BY name").fetchall()
    assert migrate(conn) == []  # second run: nothing to do, nothing re-recorded
    assert conn.execute("SELECT * FROM _migrations ORDER BY name").fetchall() == before
    conn.close()


def test_upgrade_from_previous_version_indexes_existing_rows(tmp_path):
    path = tmp_path / "log.db"
    conn = _connect(path)
    assert migrate(conn, upto="m001_initial") == ["m001_initial"]
    assert "turns_fts" not in _tables(conn)
    conn.execute("INSERT INTO conversations (id, key, channel, started) VALUES (1, 'k', 'telegram', ?)", (utc_iso(),))
    for i, q in enumerate(["电子社保卡怎么申领", "社保卡丢了怎么办", "养老金查询"]):
        conn.execute(
            "INSERT INTO turns (id, conversation_id, ts, channel, question, normalized, route, answer) "
            "VALUES (?, 1, ?, 'telegram', ?, ?, 'faq', '请拨打12333')",
            (f"old{i}", utc_iso(), q, q),
        )
    conn.close()

    # The normal open path upgrades it.
    conn = open_db_sync(path, readonly=False)
    assert applied_migrations(conn) == ALL
    hits = {r["id"] for r in queries.search_turns(conn, "社保卡")}
    assert hits == {"old0", "old1"}
    conn.execute("INSERT INTO turns_fts (turns_fts, rank) VALUES ('integrity-check', 1)")
    # The triggers keep the index in step from now on: update and delete.
    conn.execute("UPDATE turns SET question = '补办社保卡', normalized = '补办社保卡' WHERE id = 'old2'")
    conn.execute("DELETE FROM turns WHERE id = 'old0'")
    assert {r["id"] for r in queries.search_turns(conn, "社保卡")} == {"old1", "old2"}
    conn.execute("INSERT INTO turns_fts (turns_fts, rank) VALUES ('integrity-check', 1)")
    conn.close()


def test_concurrent_migrations_apply_once(tmp_path):
    path = tmp_path / "log.db"
    errors: list[BaseException] = []

    def run():
        try:
            c = _connect(path)
            c.execute("PRAGMA busy_timeout = 5000")
            migrate(c)
            c.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = _connect(path)
    assert conn.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(ALL)
    conn.close()


def test_migrate_refuses_unknown_target(tmp_path):
    with pytest.raises(ValueError):
        migrate(_connect(tmp_path / "x.db"), upto="m999_nope")


async def test_open_db_sets_pragmas_and_migrates(tmp_path):
    path = tmp_path / "nested" / "dir" / "log.db"  # parent folders are created
    conn = await open_db(path)
    try:
        assert (await (await conn.execute("PRAGMA journal_mode")).fetchone())[0] == "wal"
        assert (await (await conn.execute("PRAGMA synchronous")).fetchone())[0] == 2  # FULL
        assert (await (await conn.execute("PRAGMA foreign_keys")).fetchone())[0] == 1
        assert (await (await conn.execute("PRAGMA busy_timeout")).fetchone())[0] == 5000
        rows = await conn.execute_fetchall("SELECT name FROM _migrations ORDER BY name")
        assert [r[0] for r in rows] == ALL
        assert conn.isolation_level is None
    finally:
        await conn.close()

    ro = await open_db(path, readonly=True)
    try:
        assert (await (await ro.execute("PRAGMA foreign_keys")).fetchone())[0] == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await ro.execute("INSERT INTO reviews (turn_id, ts) VALUES ('x', 'y')")
    finally:
        await ro.close()


def test_open_db_sync_readonly_and_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_db_sync(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()  # a read-only open never creates the file

    path = tmp_path / "log.db"
    rw = open_db_sync(path, readonly=False)
    assert rw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert rw.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert rw.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    rw.close()

    ro = open_db_sync(path)
    assert ro.execute("SELECT count(*) FROM turns").fetchone()[0] == 0
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.execute("DELETE FROM turns")
    ro.close()


def test_foreign_keys_cascade(tmp_path):
    conn = open_db_sync(tmp_path / "log.db", readonly=False)
    conn.execute("INSERT INTO conversations (id, key, channel, started) VALUES (1, 'k', 'cli', 'now')")
    conn.execute("INSERT INTO turns (id, conversation_id, ts, channel, route) VALUES ('t1', 1, 'now', 'cli', 'faq')")
    conn.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES ('t1', 'up', 'now')")
    conn.execute("INSERT INTO reviews (turn_id, label, reviewer, ts) VALUES ('t1', 'correct', 'ann', 'now')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES ('t1', 'meh', 'now')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES ('nope', 'up', 'now')")
    conn.execute("DELETE FROM conversations WHERE id = 1")
    for table in ("turns", "feedback", "reviews"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    conn.close()


def test_utc_iso_format():
    import datetime as dt

    aware = dt.datetime(2025, 3, 1, 16, 15, 2, 117999, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert utc_iso(aware) == "2025-03-01T08:15:02.117Z"
    assert utc_iso(dt.datetime(2025, 3, 1, 8, 15, 2)) == "2025-03-01T08:15:02.000Z"  # naive = UTC
    assert len(utc_iso()) == 24


def test_feedback_table_rebuild_keeps_rows_and_accepts_withdrawn(tmp_path):
    path = tmp_path / "log.db"
    conn = _connect(path)
    migrate(conn, upto="m002_turns_fts")
    conn.execute("INSERT INTO conversations (id, key, channel, started) VALUES (1, 'k', 'matrix', ?)", (utc_iso(),))
    conn.execute(
        "INSERT INTO turns (id, conversation_id, ts, channel, question, route, answer) "
        "VALUES ('t1', 1, ?, 'matrix', 'q', 'faq', 'a')",
        (utc_iso(),),
    )
    conn.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES ('t1', 'up', 'x'), ('t1', 'down', 'y')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES ('t1', 'withdrawn', 'z')")
    conn.close()

    conn = open_db_sync(path, readonly=False)
    assert applied_migrations(conn) == ALL
    conn.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES ('t1', 'withdrawn', 'z')")
    assert [tuple(r) for r in conn.execute("SELECT id, kind, ts FROM feedback ORDER BY id")] == [
        (1, "up", "x"),
        (2, "down", "y"),
        (3, "withdrawn", "z"),
    ]
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES ('t1', 'meh', 'z')")
    conn.execute("DELETE FROM turns WHERE id = 't1'")  # the foreign key still cascades
    assert conn.execute("SELECT count(*) FROM feedback").fetchone()[0] == 0
    assert "feedback_turn" in {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
