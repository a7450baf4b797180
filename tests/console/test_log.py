"""The console shell logs its exchanges (channel `console`); `faqbot ask` logs only with `--log` (channel `cli`).

`bot.cli.main.main` in-process (tests/support/cli.py `faqbot_main`; the `faqbot` process itself is tests/cli/test_main.py)
with FAQBOT_DB in a temporary folder; the log is then read back with sqlite3 and with `faqbot logs`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bot.answering.privacy import pseudonymize
from storage.secret_key import load_or_create_secret
from tests.support.cli import faqbot_main
from tests.support.env import scrub_environ

PHONE = "13812345678"


@pytest.fixture
def run(tmp_path, capsys, monkeypatch):
    """`faqbot ARGS…` for the user "alice" with the log at tmp_path/data/log.db; returns its standard output."""
    scrub_environ(monkeypatch)
    monkeypatch.setenv("FAQBOT_DB", str(tmp_path / "data" / "log.db"))
    monkeypatch.setenv("FAQBOT_HISTORY", str(tmp_path / "history"))
    monkeypatch.setenv("USER", "alice")
    monkeypatch.chdir(tmp_path)

    def run_(*args: str, stdin: str = "") -> str:
        code, out, err = faqbot_main(capsys, *args, stdin=stdin)
        assert code == 0, err
        return out

    return run_


def _rows(db: Path, sql: str, params=()):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def _raw_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def test_console_shell_logs_masked_turns_with_pseudonymous_user(tmp_path, run):
    db = tmp_path / "data" / "log.db"  # the folder does not exist yet
    questions = ["电子社保卡怎么申领", f"我的手机号{PHONE}，社保卡丢了怎么办", "社保卡能坐公交吗"]
    assert "申领" in run("shell", stdin="\n".join(questions) + "\n")

    turns = _rows(
        db,
        "SELECT t.*, kv.version AS knowledge_version FROM turns t "
        "LEFT JOIN knowledge_versions kv ON kv.id = t.knowledge_id ORDER BY t.ts, t.rowid",
    )
    assert len(turns) == 3
    assert {t["channel"] for t in turns} == {"console"}
    assert [t["route"] for t in turns] == ["faq", "faq", "none"]
    assert turns[0]["faq_id"] == "apply" and turns[1]["faq_id"] == "lost_reissue"
    assert turns[1]["question"] == "我的手机号[手机号]，社保卡丢了怎么办" and turns[1]["masked_phone"] == 1
    assert PHONE.encode() not in _raw_bytes(db)  # not in the database, its WAL or anywhere on disk
    assert all(t["knowledge_version"] and t["latency_ms"] is not None for t in turns)

    (conv,) = _rows(db, "SELECT * FROM conversations")
    assert (conv["channel"], conv["chat_type"]) == ("console", "console")
    secret = load_or_create_secret(None, db.parent / "secret.key")  # created on first run, next to the log
    assert conv["user_hash"] == pseudonymize("alice", secret)
    assert "alice" not in json.dumps(conv) and conv["chat_id"] != "console"
    assert b"alice" not in _raw_bytes(db)

    # The review CLI sees them.
    assert len(json.loads(run("logs", "list", "--channel", "console", "--json"))) == 3


def test_ask_logs_only_with_log_flag(tmp_path, run):
    db = tmp_path / "data" / "log.db"
    assert run("ask", "电子社保卡怎么申领").startswith("[faq]")
    assert not db.exists()  # no --log: nothing written, not even the file

    run("ask", "--log", f"手机号{PHONE}换了怎么办")
    run("ask", "--log", "--json", stdin="社保卡丢了\n社保卡能坐公交吗\n")
    turns = _rows(
        db,
        "SELECT t.*, kv.version AS knowledge_version FROM turns t "
        "LEFT JOIN knowledge_versions kv ON kv.id = t.knowledge_id ORDER BY t.ts, t.rowid",
    )
    assert len(turns) == 3
    assert {t["channel"] for t in turns} == {"cli"}
    assert turns[0]["question"] == "手机号[手机号]换了怎么办" and turns[0]["masked_phone"] == 1
    assert PHONE.encode() not in _raw_bytes(db)
    assert [t["route"] for t in turns[1:]] == ["faq", "none"]
    convs = _rows(db, "SELECT * FROM conversations")
    assert {(c["channel"], c["chat_type"]) for c in convs} == {("cli", "cli")}
    assert all(c["chat_id"] != "cli" for c in convs)  # a private chat id is stored as its HMAC

    assert json.loads(run("logs", "stats", "--json"))["by_channel"] == {"cli": 3}
