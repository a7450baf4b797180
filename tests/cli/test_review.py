"""Curators' verdicts: `faqbot logs label`, the interactive `faqbot logs review` queue (piped keys and a real
pseudo-terminal), and what a verdict changes in `logs gaps` and `logs stats`. The log is built by the real
TurnLog (tests/support/logs.py)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.cli.parser import VERDICT_HELP
from bot.cli.review import KEYS
from storage import queries
from storage.db import open_db_sync
from storage.reviews import VERDICTS, ReviewError, add_review, history
from tests.support.cli import run_logs as run
from tests.support.cli import run_logs_json as run_json
from tests.support.env import clean_environ, set_environ
from tests.support.logs import build_log, copy_log

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(clean_env, monkeypatch):  # this folder's scrubbing (tests/cli/conftest.py), then a curator
    monkeypatch.setenv("FAQBOT_CURATOR", "ann")


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build_log(tmp_path_factory.mktemp("reviews") / "faqbot.db")


@pytest.fixture
def db(fx, tmp_path):
    return copy_log(fx, tmp_path)


def cluster_of(clusters, question):
    return next((c for c in clusters if any(q["question"] == question for q in c["questions"])), None)


def test_label_changes_gaps_and_stats(capsys, fx, db):
    before = run_json(capsys, "stats", "--db", db)["reviews"]
    assert before["reviewed"] == 0
    gaps = run_json(capsys, "gaps", "--db", db)
    assert cluster_of(gaps, "今天天气怎么样")["count"] == 1
    assert cluster_of(gaps, "医保余额怎么查")["count"] == 2

    # out of scope: the turn leaves the inbox
    row = run_json(capsys, "label", fx.id("weather")[:8], "out-of-scope", "--db", db, "--note", "天气")
    assert row["turn_id"] == fx.id("weather") and row["curator"] == "ann" and row["status"] == "closed"
    # needs a new entry: still waiting for a knowledge change, so it stays in the inbox
    run_json(capsys, "label", fx.id("balance1"), "new-entry", "--db", db)
    # a direct answer confirmed correct, one said to be wrong
    run_json(capsys, "label", fx.id("apply_tg"), "correct", "--db", db)
    run_json(capsys, "label", fx.id("lost_pii"), "entry", "--entry", "change_phone", "--db", db, "--curator", "bob")

    gaps = run_json(capsys, "gaps", "--db", db)
    assert cluster_of(gaps, "今天天气怎么样") is None
    assert cluster_of(gaps, "医保余额怎么查")["count"] == 2
    s = run_json(capsys, "stats", "--db", db)["reviews"]
    assert s["reviewed"] == 4
    assert s["by_verdict"] == {"out-of-scope": 1, "new-entry": 1, "correct": 1, "entry": 1}
    assert (s["direct_reviewed"], s["direct_confirmed"], s["open"]) == (2, 1, 2)

    code, out, _ = run(capsys, "stats", "--db", db)
    assert code == 0 and "direct answers confirmed correct" in out and "1 of 2 reviewed" in out

    # re-label: latest wins, history kept
    run_json(capsys, "label", fx.id("weather"), "new-entry", "--db", db)
    gaps = run_json(capsys, "gaps", "--db", db)
    assert cluster_of(gaps, "今天天气怎么样")["count"] == 1  # back in the inbox
    turn = run_json(capsys, "show", fx.id("weather"), "--db", db)
    assert [(r["label"], r["reviewer"], r["note"]) for r in turn["reviews"]] == [
        ("out-of-scope", "ann", "天气"),
        ("new-entry", "ann", None),
    ]
    code, out, _ = run(capsys, "show", fx.id("lost_pii"), "--db", db)
    assert "entry change_phone" in out and "bob" in out


def test_label_rejects_bad_input_and_stores_nothing(capsys, fx, db):
    def count():
        with sqlite3.connect(db) as c:
            return c.execute("SELECT count(*) FROM reviews").fetchone()[0]

    cases = [
        (("label", fx.id("weather"), "maybe"), 2, "unknown verdict"),
        (("label", fx.id("weather"), "entry"), 2, "needs the entry id"),
        (("label", fx.id("weather"), "entry", "--entry", "no_such_entry"), 2, "unknown entry 'no_such_entry'"),
        (("label", fx.id("weather"), "correct", "--entry", "apply"), 2, "takes no entry id"),
        (("label", "ffffffffffff", "correct"), 1, "no turn with id"),
        (("label", "abcd", "correct"), 2, "ambiguous"),
    ]
    for argv, want_code, message in cases:
        code, _, err = run(capsys, *argv, "--db", db)
        assert code == want_code and message in err, (argv, code, err)
    code, _, err = run(capsys, "label", fx.id("weather"), "correct", "--db", db.parent / "missing.db")
    assert code == 1 and "no conversation log" in err
    assert count() == 0


def test_triggers_guard_every_writer(fx, db):
    """Writers that bypass storage.reviews (Datasette's canned queries) hit the same rules."""
    conn = sqlite3.connect(db)  # no foreign_keys pragma, like Datasette
    try:
        for sql, params, message in [
            (
                "INSERT INTO reviews (turn_id, label, reviewer, ts) VALUES (?, 'great', 'x', 'now')",
                (fx.id("weather"),),
                "unknown verdict",
            ),
            (
                "INSERT INTO reviews (turn_id, label, reviewer, ts) VALUES (?, 'entry', 'x', 'now')",
                (fx.id("weather"),),
                "needs an entry id",
            ),
            (
                "INSERT INTO reviews (turn_id, label, reviewer, ts) VALUES ('nope', 'spam', 'x', 'now')",
                (),
                "unknown turn",
            ),
            (
                "INSERT INTO reviews (turn_id, label, reviewer, ts) VALUES (?, 'spam', ' ', 'now')",
                (fx.id("weather"),),
                "reviewer",
            ),
        ]:
            with pytest.raises(sqlite3.IntegrityError, match=message):
                conn.execute(sql, params)
    finally:
        conn.close()
    rw = open_db_sync(db, readonly=False)
    try:
        with pytest.raises(ReviewError):
            add_review(rw, fx.id("weather"), "correct", curator="  ")
        assert history(rw, fx.id("weather")) == []
    finally:
        rw.close()


def _cli_settings(db: Path) -> dict[str, str]:
    return {"FAQBOT_DB": str(db), "FAQBOT_CURATOR": "cara", "PYTHONIOENCODING": "utf-8", "COLUMNS": "100"}


def test_review_queue_with_piped_keys_is_resumable(fx, db, capsys, monkeypatch):
    """In-process (keys from a stream that is no terminal); the real process is the pseudo-terminal test below."""
    set_environ(monkeypatch, _cli_settings(db))

    def review(keys: str) -> tuple[str, dict]:
        code, out, err = run(capsys, "review", "--json", stdin=keys)
        assert code == 0, err
        return out, json.loads(out[out.rindex("\n{") + 1 :])

    # Queue order: unreviewed gaps newest first. The fixture's newest typed gap is "怎么查医保余额" (balance2).
    out, summary = review("3s21\nn密码锁定\n4q")
    assert summary["labelled"] == 3 and summary["skipped"] == 1 and summary["curator"] == "cara"
    got = {r["turn_id"]: (r["verdict"], r["faq_id"], r["note"]) for r in summary["reviews"]}
    first, third, fourth = (r["turn_id"] for r in summary["reviews"])
    assert got[first] == ("new-entry", None, None)
    assert got[third][0] == "entry" and got[third][1]  # candidate 1 of that turn
    assert got[fourth] == ("out-of-scope", None, "密码锁定")
    assert "你好" not in out  # a greeting is no question to review
    with sqlite3.connect(db) as c:
        stored = c.execute("SELECT turn_id, label, faq_id, reviewer FROM reviews ORDER BY id").fetchall()
    assert [(t, lab, rv) for t, lab, _, rv in stored] == [
        (first, "new-entry", "cara"),
        (third, "entry", "cara"),
        (fourth, "out-of-scope", "cara"),
    ]
    ro = open_db_sync(db)
    try:
        assert got[third][1] == queries.get_turn(ro, third)["candidates"][0]["faq_id"]
    finally:
        ro.close()

    # Resume: the labelled turns are gone from the queue; the skipped one is offered again, first.
    out2, summary2 = review("q")
    assert summary2["labelled"] == 0 and summary2["left"] == summary["left"]
    first_shown = out2.split("╭")[1]
    assert first not in out2 and third not in out2
    assert summary["left"] == summary2["left"]
    # An unknown entry id is refused and asked again; Esc cancels; end of input quits cleanly.
    out3, summary3 = review("2no_such\n\x1b5")
    assert "unknown entry 'no_such'" in out3 and summary3["labelled"] == 1
    assert summary3["reviews"][0]["verdict"] == "spam"
    assert first_shown  # the queue printed a turn panel


_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """The master side of a pseudo-terminal; ``expect`` reads until a marker shows after the previous one."""

    def __init__(self, fd: int):
        self.fd, self.raw, self.pos = fd, bytearray(), 0

    @property
    def text(self) -> bytes:
        return _ANSI.sub(b"", bytes(self.raw))

    def expect(self, marker: str, timeout: float = 60.0) -> None:
        want = marker.encode()
        deadline = time.monotonic() + timeout
        while (at := self.text.find(want, self.pos)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"{marker!r} not seen in {self.text[self.pos :][-500:]!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"terminal closed before {marker!r}: {self.text[self.pos :][-500:]!r}"
                self.raw.extend(chunk)
        self.pos = at + len(want)

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())


def test_review_queue_in_a_real_terminal(fx, db):
    """Keys without Enter (cbreak mode) in a pseudo-terminal, a typed entry id echoed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "logs", "review"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=clean_environ() | _cli_settings(db),
        cwd=REPO,
        close_fds=True,
    )
    os.close(slave)
    term = Terminal(master)
    try:
        term.expect("s skip")
        term.send("4")  # one key, no Enter
        term.expect("✓ out of scope")
        term.expect("2/")
        term.send("2")
        term.expect("entry (candidate")
        term.send("apply\r")
        term.expect("apply")  # echoed as typed
        term.expect("✓ should be entry apply")
        term.send("q")
        term.expect("still without a verdict")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT label, faq_id, reviewer FROM reviews ORDER BY id").fetchall()
    assert rows == [("out-of-scope", None, "cara"), ("entry", "apply", "cara")]


def test_parser_help_and_keys_name_every_verdict():
    assert VERDICT_HELP.startswith("one of: " + ", ".join(VERDICTS) + " ")
    assert sorted(KEYS.values()) == sorted(VERDICTS)
