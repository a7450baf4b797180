"""Review query helpers over a fixture conversation log with known rows (real SQLite file)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from storage import queries as q
from storage.db import open_db_sync, utc_iso
from storage.purge import purge

NOW = dt.datetime.now(dt.UTC)


def _ago(**kw) -> str:
    return utc_iso(NOW - dt.timedelta(**kw))


CANDS = json.dumps(
    [{"faq_id": "q01", "section": 1, "score": 71.0, "question": "电子社保卡怎么申领？"}], ensure_ascii=False
)

# id, ts, channel, route, faq_id, question, answer, guard, latency, feedback kinds (in order)
ROWS = [
    ("aa01", _ago(days=2), "telegram", "faq", "q01", "电子社保卡怎么申领", "在掌上12333申领。", None, 100.0, ["up"]),
    ("aa02", _ago(days=1), "telegram", "clarify", None, "社保卡丢了", "您是想问：", None, 200.0, ["none"]),
    (
        "bb03",
        _ago(hours=1),
        "matrix",
        "llm",
        None,
        "养老金怎么算",
        "抱歉，无法回答。",
        "fail: ungrounded",
        1500.0,
        ["down"],
    ),
    ("bb04", _ago(minutes=10), "console", "none", None, "今天天气怎么样", "这个问题我答不了。", None, 50.0, []),
    (
        "cc05",
        _ago(days=40),
        "telegram",
        "faq",
        "q02",
        "怎么激活电子社保卡",
        "打开App激活。",
        None,
        120.0,
        ["up", "down"],
    ),
    ("cc06", _ago(minutes=5), "telegram", "faq", "q01", "电子社保卡申领流程", "在掌上12333申领。", "pass", 80.0, []),
]


def _insert(conn: sqlite3.Connection, rows=ROWS, *, review: bool = True) -> None:
    conn.execute("BEGIN")
    for tid, ts, channel, route, faq_id, question, answer, guard, latency, fbs in rows:
        key = f"k-{channel}"
        conn.execute(
            "INSERT OR IGNORE INTO conversations (key, channel, chat_id, chat_type, user_hash, started) "
            "VALUES (?, ?, 'c', 'group', 'h', ?)",
            (key, channel, ts),
        )
        conn.execute(
            "INSERT INTO turns (id, conversation_id, ts, channel, via, question, normalized, route, faq_id, section, "
            "score, candidates, context_ids, guard, answer, latency_ms) VALUES "
            "(?, (SELECT id FROM conversations WHERE key = ?), ?, ?, 'text', ?, ?, ?, ?, NULL, 70.0, ?, '[]', ?, ?, ?)",
            (tid, key, ts, channel, question, question, route, faq_id, CANDS, guard, answer, latency),
        )
        for kind in fbs:
            conn.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES (?, ?, ?)", (tid, kind, ts))
    if review:
        conn.execute(
            "INSERT INTO reviews (turn_id, status, label, note, reviewer, ts) VALUES ('cc05', 'open', 'new-entry', 'n', 'r', ?)",
            (_ago(days=39),),
        )
    conn.execute("COMMIT")


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "log.db"
    rw = open_db_sync(path, readonly=False)
    _insert(rw)
    rw.close()
    conn = open_db_sync(path)  # the review CLI reads read-only
    yield conn
    conn.close()


def ids(rows) -> list[str]:
    return [r["turn_id"] for r in rows]


def test_list_turns_filters(db):
    assert ids(q.list_turns(db)) == ["cc06", "bb04", "bb03", "aa02", "aa01", "cc05"]  # newest first
    assert ids(q.list_turns(db, route="faq")) == ["cc06", "aa01", "cc05"]
    assert ids(q.list_turns(db, since=NOW - dt.timedelta(days=3))) == ["cc06", "bb04", "bb03", "aa02", "aa01"]
    assert ids(q.list_turns(db, since=(NOW - dt.timedelta(hours=2)).replace(tzinfo=None))) == ["cc06", "bb04", "bb03"]
    assert ids(q.list_turns(db, channel="matrix")) == ["bb03"]
    assert ids(q.list_turns(db, feedback="up")) == ["aa01"]  # cc05's latest word is "down"
    assert ids(q.list_turns(db, feedback="down")) == ["bb03", "cc05"]
    assert ids(q.list_turns(db, feedback="none")) == ["aa02"]
    assert ids(q.list_turns(db, feedback="any")) == ["bb03", "aa02", "aa01", "cc05"]
    assert ids(q.list_turns(db, route="faq", channel="telegram", since=NOW - dt.timedelta(days=3))) == ["cc06", "aa01"]
    assert ids(q.list_turns(db, limit=2)) == ["cc06", "bb04"]
    row = q.list_turns(db, route="clarify")[0]
    assert row["candidates"][0]["faq_id"] == "q01" and row["context_ids"] == [] and row["feedback"] == "none"
    with pytest.raises(ValueError):
        q.list_turns(db, feedback="meh")


def test_get_turn_by_id_and_prefix(db):
    t = q.get_turn(db, "cc05")
    assert t["question"] == "怎么激活电子社保卡" and t["feedback"] == "down"
    assert [f["kind"] for f in t["feedback_events"]] == ["up", "down"]
    assert t["reviews"][0]["label"] == "new-entry" and t["reviews"][0]["status"] == "open"
    assert t["conversation"]["channel"] == "telegram"
    assert q.get_turn(db, "bb03")["guard"] == "fail: ungrounded"
    assert q.get_turn(db, "aa02")["turn_id"] == "aa02"
    assert q.get_turn(db, "bb04")["feedback_events"] == []
    assert q.get_turn(db, "zz") is None
    assert q.get_turn(db, "") is None
    with pytest.raises(ValueError, match="ambiguous"):
        q.get_turn(db, "aa")
    assert q.get_turn(db, "%") is None  # LIKE wildcards are literal
    # a unique prefix
    rw = sqlite3.connect(db.execute("PRAGMA database_list").fetchone()[2], isolation_level=None)
    rw.execute(
        "INSERT INTO turns (id, ts, channel, route) VALUES ('dd0123456789abcd', ?, 'cli', 'faq')", (_ago(seconds=1),)
    )
    rw.close()
    assert q.get_turn(db, "dd01")["turn_id"] == "dd0123456789abcd"


def test_search_substring_and_short_text(db):
    # Trigram FTS finds a word inside a run of Chinese characters.
    assert ids(q.search_turns(db, "社保卡")) == ["cc06", "aa02", "aa01", "cc05"]
    assert ids(q.search_turns(db, "电子社保卡怎么申领")) == ["aa01"]
    assert ids(q.search_turns(db, "养老金怎么")) == ["bb03"]
    # Only the question is indexed (answers are the FAQ's own text; indexing them tripled the index).
    assert q.search_turns(db, "12333") == [] and q.search_turns(db, "无法回答") == []
    # 1-2 characters: LIKE
    assert ids(q.search_turns(db, "申领")) == ["cc06", "aa01"]
    assert ids(q.search_turns(db, "丢")) == ["aa02"]
    assert ids(q.search_turns(db, "申领", limit=1)) == ["cc06"]
    # Query syntax is quoted away: no errors, no accidental matches.
    for nasty in ['社保卡" OR "养老', "AND", "NEAR(社保 卡)", '"', "*", "%", "_", "社保卡*", "-社保卡"]:
        assert q.search_turns(db, nasty) == [], nasty
    assert q.search_turns(db, "") == [] and q.search_turns(db, "   ") == []


def test_stats(db):
    s = q.stats(db)
    assert s["total"] == 6
    assert s["by_route"] == {"faq": 3, "clarify": 1, "llm": 1, "none": 1}
    assert s["by_channel"] == {"telegram": 4, "matrix": 1, "console": 1}
    assert s["direct_rate"] == pytest.approx(0.5)
    assert (s["thumbs_up"], s["thumbs_down"], s["none_of_these"]) == (1, 2, 1)
    assert s["guard_failures"] == 1
    # latencies 50 80 100 120 200 1500: nearest rank p50 = 3rd, p95 = 6th
    assert s["latency_p50_ms"] == 100.0 and s["latency_p95_ms"] == 1500.0
    assert s["top_entries"] == [{"faq_id": "q01", "count": 2}, {"faq_id": "q02", "count": 1}]

    recent = q.stats(db, since=NOW - dt.timedelta(days=3))
    assert recent["total"] == 5 and recent["by_route"]["faq"] == 2
    assert (recent["thumbs_up"], recent["thumbs_down"]) == (1, 1)
    assert recent["top_entries"] == [{"faq_id": "q01", "count": 2}]
    assert recent["latency_p50_ms"] == 100.0  # 50 80 100 200 1500

    empty = q.stats(db, since=NOW + dt.timedelta(days=1))
    assert empty["total"] == 0 and empty["direct_rate"] == 0.0 and empty["latency_p50_ms"] is None


def test_gap_rows(db):
    gaps = q.gap_rows(db)
    assert ids(gaps) == ["cc05", "aa02", "bb03", "bb04"]  # oldest first
    by_id = {g["turn_id"]: g for g in gaps}
    assert by_id["cc05"]["reasons"] == ["thumbs-down"]
    assert by_id["aa02"]["reasons"] == ["route:clarify", "none-of-these"] and by_id["aa02"]["feedback"] == "none"
    assert by_id["bb03"]["reasons"] == ["guard-fail", "thumbs-down"]
    assert by_id["bb04"]["reasons"] == ["route:none"] and by_id["bb04"]["feedback"] is None
    assert by_id["aa02"]["candidates"][0]["faq_id"] == "q01"
    assert set(by_id["aa02"]) >= {"question", "normalized", "route", "faq_id", "candidates", "feedback"}
    assert ids(q.gap_rows(db, since=NOW - dt.timedelta(days=3))) == ["aa02", "bb03", "bb04"]


def _size(path) -> int:
    return sum(p.stat().st_size for p in path.parent.iterdir() if p.name.startswith(path.name))


def test_purge_removes_old_rows_and_shrinks(tmp_path):
    path = tmp_path / "log.db"
    rw = open_db_sync(path, readonly=False)
    _insert(rw)
    filler = "电子社保卡的申领、激活、挂失和注销都可以在手机上办理。" * 20
    old = [
        (
            f"ee{i:04d}",
            _ago(days=50, minutes=i),
            "telegram",
            "faq",
            "q03",
            f"旧问题{i}{filler}",
            filler,
            None,
            10.0,
            ["up"],
        )
        for i in range(300)
    ]
    rw.execute("BEGIN")
    for tid, ts, channel, route, faq_id, question, answer, _guard, _latency, _fbs in old:
        rw.execute("INSERT INTO conversations (key, channel, started) VALUES (?, 'telegram', ?)", (f"old-{tid}", ts))
        rw.execute(
            "INSERT INTO turns (id, conversation_id, ts, channel, question, normalized, route, faq_id, answer) "
            "VALUES (?, (SELECT id FROM conversations WHERE key = ?), ?, ?, ?, ?, ?, ?, ?)",
            (tid, f"old-{tid}", ts, channel, question, question, route, faq_id, answer),
        )
        rw.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES (?, 'up', ?)", (tid, ts))
        rw.execute("INSERT INTO reviews (turn_id, label, reviewer, ts) VALUES (?, 'spam', 'r', ?)", (tid, ts))
    rw.execute("COMMIT")
    rw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = _size(path)
    assert rw.execute("SELECT count(*) FROM conversations").fetchone()[0] == 303

    assert purge(rw, dt.timedelta(days=30)) == 301  # 300 filler rows + cc05
    after = _size(path)
    assert after < before / 2, (before, after)
    assert [r[0] for r in rw.execute("SELECT id FROM turns ORDER BY id")] == ["aa01", "aa02", "bb03", "bb04", "cc06"]
    assert rw.execute("SELECT count(*) FROM feedback WHERE turn_id NOT IN ('aa01', 'aa02', 'bb03')").fetchone()[0] == 0
    assert rw.execute("SELECT count(*) FROM feedback").fetchone()[0] == 3
    assert rw.execute("SELECT count(*) FROM reviews").fetchone()[0] == 0
    assert rw.execute("SELECT count(*) FROM conversations").fetchone()[0] == 3  # orphans gone
    assert rw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rw.execute("INSERT INTO turns_fts (turns_fts, rank) VALUES ('integrity-check', 1)")
    assert ids(q.search_turns(rw, "社保卡")) == ["cc06", "aa02", "aa01"]
    assert q.search_turns(rw, "旧问题") == []

    # Purging again deletes nothing and the file does not grow.
    assert purge(rw, dt.timedelta(days=30)) == 0
    assert _size(path) <= after
    assert purge(rw, dt.timedelta(0)) == 5
    assert q.search_turns(rw, "社保卡") == [] and _size(path) <= after
    rw.close()


def test_withdrawn_feedback_counts_as_none_and_latest_state_wins(tmp_path):
    """A removed reaction appends 'withdrawn': the turn then has no feedback in list/stats/gaps; a later word wins."""
    rows = [
        (
            "dd01",
            _ago(hours=3),
            "matrix",
            "faq",
            "q01",
            "电子社保卡怎么申领",
            "在掌上12333申领。",
            None,
            90.0,
            ["down", "withdrawn"],
        ),
        (
            "dd02",
            _ago(hours=2),
            "matrix",
            "faq",
            "q02",
            "怎么激活电子社保卡",
            "打开App激活。",
            None,
            90.0,
            ["up", "withdrawn", "down"],
        ),
        ("dd03", _ago(hours=1), "matrix", "faq", "q02", "激活电子社保卡", "打开App激活。", None, 90.0, ["down", "up"]),
    ]
    path = tmp_path / "log.db"
    rw = open_db_sync(path, readonly=False)
    _insert(rw, rows, review=False)
    rw.close()
    conn = open_db_sync(path)
    try:
        assert q.get_turn(conn, "dd01")["feedback"] is None
        assert ids(q.list_turns(conn, feedback="any")) == ["dd03", "dd02"]
        assert ids(q.list_turns(conn, feedback="down")) == ["dd02"]
        s = q.stats(conn)
        assert (s["thumbs_up"], s["thumbs_down"]) == (1, 1)
        gaps = q.gap_rows(conn)
        assert ids(gaps) == ["dd02"] and gaps[0]["reasons"] == ["thumbs-down"]  # dd01 withdrawn, dd03 now 👍
    finally:
        conn.close()
