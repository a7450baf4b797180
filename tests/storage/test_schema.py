"""One source per fact in storage: the turn columns, the review view, feedback kinds, write transactions.

These fail when a fact is written a second time (a column list, the latest-feedback or gap SQL, a BEGIN IMMEDIATE)
or when the single definition and the migrated database disagree.
"""

from __future__ import annotations

import ast
import re
import sqlite3
from pathlib import Path

import pytest
import yaml

from bot.answering.types import FeedbackKind
from storage import writer
from storage.db import open_db_sync, utc_iso
from storage.schema import FEEDBACK_FILTERS, FEEDBACK_KINDS, JSON_COLUMNS, REVIEW_VIEW, TURN_COLUMNS, VIEW_COLUMNS
from storage.transactions import immediate_transaction

REPO = Path(__file__).resolve().parents[2]
STORAGE = REPO / "storage"
METADATA = STORAGE / "datasette" / "metadata.yml"


@pytest.fixture
def db(tmp_path):
    conn = open_db_sync(tmp_path / "log.db", readonly=False)
    yield conn
    conn.close()


def _columns(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    return tuple(r[1] for r in conn.execute(f"PRAGMA table_info({table})"))


def test_migrated_schema_has_exactly_the_columns_the_code_names(db):
    # Same set; the table's own order differs (m008 added knowledge_id at the end), the code's order is the one
    # readers have always seen.
    assert sorted(_columns(db, "turns")) == sorted(TURN_COLUMNS) and len(TURN_COLUMNS) == len(set(TURN_COLUMNS))
    assert _columns(db, REVIEW_VIEW) == VIEW_COLUMNS
    assert set(JSON_COLUMNS) <= set(TURN_COLUMNS)


def test_writer_inserts_the_schema_columns_in_order():
    head = writer._multi_row_sql("turns", 1)
    listed = re.search(r"INSERT INTO turns \(([^)]*)\)", head).group(1)
    assert tuple(c.strip() for c in listed.split(",")) == TURN_COLUMNS
    values = head.split(" VALUES ", 1)[1]
    assert values.count("?") == len(TURN_COLUMNS)


def test_feedback_kinds_are_the_ones_the_schema_accepts(db):
    assert FEEDBACK_KINDS == tuple(FeedbackKind) == ("up", "down", "none", "withdrawn")
    assert FEEDBACK_FILTERS == ("up", "down", "none", "any")
    db.execute("INSERT INTO conversations (id, key, channel, started) VALUES (1, 'k', 'cli', 'now')")
    db.execute(
        "INSERT INTO turns (id, conversation_id, ts, channel, route) VALUES ('t1', 1, ?, 'cli', 'faq')", (utc_iso(),)
    )
    for kind in FeedbackKind:
        db.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES ('t1', ?, 'now')", (kind,))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO feedback (turn_id, kind, ts) VALUES ('t1', 'sideways', 'now')")


def _turn(db, tid: str, route: str = "faq", guard: str | None = None, ts: str | None = None) -> None:
    db.execute("INSERT OR IGNORE INTO conversations (id, key, channel, started) VALUES (1, 'k', 'cli', 'now')")
    db.execute(
        "INSERT INTO turns (id, conversation_id, ts, channel, route, guard, answer, llm_raw) "
        "VALUES (?, 1, ?, 'cli', ?, ?, 'A', '')",
        (tid, ts or utc_iso(), route, guard),
    )


def test_review_view_defines_latest_feedback_gap_and_latest_review(db):
    _turn(db, "plain")
    _turn(db, "clarify", route="clarify")
    _turn(db, "guard", route="llm", guard="fail: unsupported claim")
    _turn(db, "down")
    _turn(db, "changed")
    _turn(db, "withdrawn")
    _turn(db, "settled", route="none")
    _turn(db, "reopened", route="none")
    fb = [("down", "down"), ("changed", "down"), ("changed", "up"), ("withdrawn", "down"), ("withdrawn", "withdrawn")]
    db.executemany("INSERT INTO feedback (turn_id, kind, ts) VALUES (?, ?, 'now')", fb)
    reviews = [
        ("settled", "open", "new-entry"),
        ("settled", "closed", "spam"),
        ("reopened", "closed", "spam"),
        ("reopened", "open", "new-entry"),
    ]
    db.executemany("INSERT INTO reviews (turn_id, status, label, reviewer, ts) VALUES (?, ?, ?, 'c', 'now')", reviews)
    rows = {r["id"]: dict(r) for r in db.execute(f"SELECT * FROM {REVIEW_VIEW}")}

    assert {k: rows[k]["feedback"] for k in ("plain", "down", "changed", "withdrawn")} == {
        "plain": None,
        "down": "down",
        "changed": "up",
        "withdrawn": None,
    }
    assert (rows["changed"]["thumbs_up"], rows["changed"]["thumbs_down"]) == (1, 1)
    assert {k for k, r in rows.items() if r["is_gap"]} == {"clarify", "guard", "down", "settled", "reopened"}
    assert rows["clarify"]["gap_reasons"] == "route:clarify"
    assert rows["guard"]["gap_reasons"] == "guard-fail"
    assert rows["down"]["gap_reasons"] == "thumbs-down"
    assert rows["plain"]["gap_reasons"] == ""
    assert (rows["settled"]["settled"], rows["settled"]["review_verdict"], rows["settled"]["review_status"]) == (
        1,
        "spam",
        "closed",
    )
    assert (rows["reopened"]["settled"], rows["reopened"]["review_verdict"]) == (0, "new-entry")
    assert rows["plain"]["review_id"] is None and rows["plain"]["settled"] == 0
    assert rows["plain"]["llm_raw"] == "A"  # '' = same as the answer (storage/trace.py)
    assert rows["plain"]["chat_type"] is None


# The SQL that only migration m009 may write: the latest feedback / latest review subqueries and the gap signals.
_ONCE = {
    "latest feedback": re.compile(r"FROM feedback f WHERE f\.turn_id = t\.id ORDER BY f\.id DESC", re.I),
    "latest review": re.compile(r"max\(r2?\.id\)", re.I),
    "gap routes": re.compile(r"route IN \('clarify', 'none'\)", re.I),
}


def test_latest_feedback_gap_and_latest_review_are_written_only_in_the_view_migration():
    migrations = (STORAGE / "migrations.py").read_text()
    view = migrations[migrations.index("def _turn_review_view") :]
    texts = {p.relative_to(REPO).as_posix(): p.read_text() for p in STORAGE.rglob("*.py")} | {
        "storage/datasette/metadata.yml": METADATA.read_text()
    }
    texts["storage/migrations.py"] = migrations[: migrations.index("def _turn_review_view")]
    for what, pattern in _ONCE.items():
        assert len(pattern.findall(view)) >= 1 or what == "gap routes" and "'clarify', 'none'" in view, what
        found = [name for name, text in texts.items() if pattern.search(text)]
        assert not found, f"{what} written again in {found}; select it from the {REVIEW_VIEW} view"


def test_datasette_canned_queries_read_turns_through_the_review_view():
    queries = yaml.safe_load(METADATA.read_text())["databases"]["faqbot"]["queries"]
    readers = {name: q["sql"] for name, q in queries.items() if not q.get("write")}
    assert readers
    for name, sql in readers.items():
        assert re.search(rf"\b{REVIEW_VIEW}\b", sql), name
        assert not re.search(r"\b(from|join)\s+turns\b", sql, re.I), f"{name} reads the turns table directly"


def _code_strings(path: Path) -> list[str]:
    """The string constants of a module's code (docstrings left out), f-string parts included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def test_write_transactions_are_begun_only_by_the_helper():
    begins = sorted(
        p.relative_to(REPO).as_posix()
        for p in STORAGE.rglob("*.py")
        if any("BEGIN IMMEDIATE" in s.upper() for s in _code_strings(p))
    )
    assert begins == ["storage/transactions.py"]


def test_immediate_transaction_commits_or_rolls_back_whole(db):
    _turn(db, "a")
    with pytest.raises(RuntimeError):
        with immediate_transaction(db):
            _turn(db, "b")
            raise RuntimeError("boom")
    assert not db.in_transaction
    with immediate_transaction(db):
        _turn(db, "c")
    assert [r[0] for r in db.execute("SELECT id FROM turns ORDER BY id")] == ["a", "c"]
    # A failing statement inside (a duplicate id) rolls the whole block back and raises the original error.
    with pytest.raises(sqlite3.IntegrityError):
        with immediate_transaction(db):
            _turn(db, "d")
            _turn(db, "a")
    assert [r[0] for r in db.execute("SELECT id FROM turns ORDER BY id")] == ["a", "c"]


def test_datasette_canned_queries_use_the_turns_indexes(db):
    """EXPLAIN QUERY PLAN of every read-only canned query: no full scan of the turns or feedback (a scan of the ts
    index newest first stops at the page). Statistics with an empty reviews table once made "Reviews" read every
    turn; its reviews now drive the join."""
    for i in range(300):
        _turn(db, f"t{i:04d}", route=("faq", "clarify", "llm", "none")[i % 4], guard="fail: x" if i % 7 == 0 else None)
    db.executemany(
        "INSERT INTO feedback (turn_id, kind, ts) VALUES (?, 'down', 'now')", [(f"t{i:04d}",) for i in range(0, 300, 5)]
    )
    db.execute("ANALYZE")
    queries = yaml.safe_load(METADATA.read_text())["databases"]["faqbot"]["queries"]
    for name, q in queries.items():
        if q.get("write"):
            continue
        params = dict.fromkeys(re.findall(r":(\w+)", q["sql"]), "abcd")
        plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + q["sql"], params)]
        assert not {"SCAN t", "SCAN f", "SCAN turns", "SCAN feedback"} & set(plan), (name, plan)
    plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + queries["latest_reviews"]["sql"])]
    assert plan[0] == "SCAN r" and plan[1].startswith("SEARCH t USING INDEX"), plan
