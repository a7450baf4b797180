"""Retention (storage/purge.py): batch sizes follow the measured lock time, conversations left without turns go
(without an index on turns.conversation_id), and nothing else changes. Timings belong to `make bench`."""

from __future__ import annotations

import datetime as dt
import sqlite3

from storage.db import open_db_sync, utc_iso
from storage.purge import FIRST_BATCH, GAP_MARGIN_S, MAX_BATCH, MIN_BATCH, next_batch_size, purge_old, writer_gap
from tests.storage.test_scale import _check

NOW = dt.datetime.now(dt.UTC)


def test_next_batch_size_follows_the_lock_time():
    # Twice the target: half the size at once; ten times: a tenth.
    assert next_batch_size(2000, 0.12, 0.06) == 1000
    assert next_batch_size(2000, 0.6, 0.06) == 200
    # A quick batch grows the next by half at most, however quick it was (warm pages prove little).
    assert next_batch_size(2000, 0.03, 0.06) == 3000  # target/took = 2, capped at 1.5
    assert next_batch_size(2000, 0.001, 0.06) == 3000
    assert next_batch_size(2000, 0.0, 0.06) == 3000
    # On target: unchanged. Bounds hold.
    assert next_batch_size(2000, 0.06, 0.06) == 2000
    assert next_batch_size(MIN_BATCH, 5.0, 0.06) == MIN_BATCH
    assert next_batch_size(MAX_BATCH, 0.0001, 0.06) == MAX_BATCH
    assert next_batch_size(100, 1.0, 0.06, smallest=50) == 50


def test_the_lock_stays_free_long_enough_for_a_writer_that_waited_meanwhile():
    # SQLite's busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms between tries: a writer that has
    # waited through a lock of L ms is at the delay after its sleeps so far add up to L; the gap is that delay.
    for lock_ms, delay_ms in [
        (0.5, 1),
        (2, 2),
        (7, 5),
        (10, 10),
        (30, 15),
        (50, 20),
        (60, 25),
        (120, 25),
        (150, 50),
        (200, 50),
        (300, 100),
        (5000, 100),
    ]:
        assert abs(writer_gap(lock_ms / 1000) - (delay_ms / 1000 + GAP_MARGIN_S)) < 1e-9, lock_ms


def _log(path, old: int, new: int) -> sqlite3.Connection:
    conn = open_db_sync(path, readonly=False)
    conn.execute("BEGIN")
    for cid in range(1, 5):
        conn.execute(
            "INSERT INTO conversations (id, key, channel, started) VALUES (?, ?, 'cli', 'now')", (cid, f"k{cid}")
        )
    for i in range(old + new):
        is_old = i < old
        # conversation 1: old turns only; 2: old and new; 3: new only; 4: never had a turn
        cid = (1 if i % 2 else 2) if is_old else (2 if i % 2 else 3)
        ts = utc_iso(NOW - dt.timedelta(days=100 if is_old else 1, minutes=i))
        conn.execute(
            "INSERT INTO turns (id, conversation_id, ts, channel, route, question, answer, latency_ms) "
            "VALUES (?, ?, ?, 'cli', ?, ?, '答', 5)",
            (f"t{i:05d}", cid, ts, "faq" if i % 3 else "none", f"社保卡问题{i}"),
        )
        if i % 4 == 0:
            conn.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES (?, 'down', ?)", (f"t{i:05d}", ts))
    conn.execute("COMMIT")
    return conn


def test_every_batch_slower_than_the_target_shrinks_the_next(tmp_path):
    conn = _log(tmp_path / "log.db", old=400, new=30)
    sizes: list[int] = []
    # A lock budget no batch can meet: each batch is smaller than the one before until the smallest size.
    done = purge_old(conn, dt.timedelta(days=90), max_lock_s=1e-7, progress=sizes.append)
    assert done["deleted"] == 400 and sum(sizes) == 400
    assert sizes[0] == FIRST_BATCH
    assert all(b <= a for a, b in zip(sizes, sizes[1:], strict=False))
    assert sizes[-2] == MIN_BATCH and done["batch_sizes"]["min"] == MIN_BATCH
    _check(conn)
    conn.close()


def test_quick_batches_grow_by_half_at_most(tmp_path):
    conn = _log(tmp_path / "log.db", old=3000, new=30)
    sizes: list[int] = []
    done = purge_old(conn, dt.timedelta(days=90), max_lock_s=1e6, progress=sizes.append)  # every batch is quick
    assert sizes == [200, 300, 450, 675, 1012, 3000 - 2637]
    assert done["deleted"] == 3000 and done["max_lock_ms"] >= done["max_delete_lock_ms"] > 0
    _check(conn)
    conn.close()


def test_conversations_without_turns_left_go_and_the_others_stay(tmp_path):
    conn = _log(tmp_path / "log.db", old=400, new=40)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'turns_conversation'").fetchone()[0] == 0
    done = purge_old(conn, dt.timedelta(days=90))
    assert done["deleted"] == 400
    # 1 had only old turns and 4 none at all; 2 and 3 have new ones.
    assert [r[0] for r in conn.execute("SELECT id FROM conversations ORDER BY id")] == [2, 3]
    assert conn.execute("SELECT count(*) FROM turns").fetchone()[0] == 40
    assert conn.execute("SELECT count(*) FROM feedback WHERE turn_id NOT IN (SELECT id FROM turns)").fetchone()[0] == 0
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # switched off for the deletes only
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # restored
    conn.execute("INSERT INTO turns_fts (turns_fts, rank) VALUES ('integrity-check', 1)")
    _check(conn)
    conn.close()
