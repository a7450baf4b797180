"""Hostile input against the log and the review CLI (issue 12, items 7, 8, 9, 11, 12): terminal escapes in
questions, spreadsheet formulas, exports aimed at the database, files that are not logs, absurd arguments, full
disks and locked databases. Real SQLite files, the real TurnLog and `bot.cli.main.main` (subprocesses where stdin
bytes, resource limits, a full standard output or another user matter)."""

from __future__ import annotations

import csv
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.cli.main import main
from tests.support.cli import child_env, faqbot, faqbot_main
from tests.support.cli import run_logs as run
from tests.support.env import clean_environ, set_environ
from tests.support.logs import build_log, copy_log

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534

# Clear screen and scrollback, home, alternate screen, an OSC-8 link, an 8-bit CSI, a window title, BEL, NUL and
# rich markup that would become a link if it were parsed.
HOSTILE = (
    "社保卡能寄到火星吗\x1b[2J\x1b[3J\x1b[H\x1b[?1049h\x1b]8;;http://evil.example/\x1b\\点这里\x1b]8;;\x1b\\"
    "\x9b31m红色\x1b]0;pwned\x07\x07\x00[link=http://evil.example/]标记[/link]"
)
CLEAN = "社保卡能寄到火星吗点这里红色[link=http://evil.example/]标记[/link]"
# None of these may reach the terminal. ("\x1b]8;" would also be rich turning the markup above into a link.)
BAD = ("\x1b[2J", "\x1b[3J", "\x1b[H", "\x1b[?1049h", "\x1b]8;", "\x9b", "\x1b]0;", "\x07", "\x00", "pwned")


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build_log(tmp_path_factory.mktemp("hostile") / "faqbot.db")


@pytest.fixture
def db(fx, tmp_path):
    return copy_log(fx, tmp_path)


def cli(*argv, stdin=b"", env=None, user=None, limits=None, timeout=120):
    """`faqbot ARGV…` in a subprocess; returns (exit code, stdout bytes, stderr text)."""

    def pre():
        if limits:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the limit fails with EFBIG instead
            for res, value in limits.items():
                resource.setrlimit(res, (value, value))

    p = faqbot(
        *argv,
        stdin=stdin,
        env={**clean_environ(), **(env or {})},
        timeout=timeout,
        user=user,
        preexec_fn=pre if limits else None,
    )
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


# Root may write anywhere (and CI runs as root): the CLI then runs as user 65534. The interpreter lives where only
# root may read (e.g. /root/.pyenv), so the child imports what the command needs first, then drops to nobody: every
# module of bot and storage (the verbs import theirs lazily) except the chat channels, which no `logs` verb uses
# (importing aiogram alone took seconds of the test); a module missed here fails the command with an ImportError.
_AS_NOBODY = """
import importlib, os, pkgutil, sys
def load(name):  # the package and its modules, recursively (walk_packages would import the channels to recurse)
    pkg = importlib.import_module(name)
    for m in pkgutil.iter_modules(pkg.__path__, name + "."):
        if m.name not in ("bot.matrix", "bot.telegram", "bot.__main__"):
            load(m.name) if m.ispkg else importlib.import_module(m.name)
load("bot"); load("storage")
import bot.cli.main, bot.app.settings
import rich.console, rich.table, rich.text, rich.box, rich.markup, rich.cells, json, sqlite3
bot.cli.main.build_parser()
bot.app.settings.Settings()
if os.geteuid() == 0:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.exit(bot.cli.main.main(sys.argv[1:]))
"""


def cli_as_nobody(*argv):
    p = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, *map(str, argv)], capture_output=True, env=child_env(), cwd=REPO, timeout=120
    )
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def one_line_error(err: str) -> None:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err


def rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM turns").fetchone()[0]
    finally:
        conn.close()


def make_legacy_hostile(path: Path, fx) -> str:
    """Write hostile text into a logged turn directly, as a log written before the fix (or by another tool) has."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE turns SET question = ?, answer = ?, error = ?, llm_raw = ? WHERE id = ?",
            (HOSTILE, HOSTILE, HOSTILE, HOSTILE, fx.id("weather")),
        )
        conn.execute(
            "UPDATE turns SET candidates = ? WHERE id = ?",
            (json.dumps([{"faq_id": "x\x1b[2J", "section": 1, "score": 1, "question": HOSTILE}]), fx.id("weather")),
        )
    conn.close()
    return fx.id("weather")


# ------------------------------------------------------------------------------------ 7: terminal escapes
@pytest.mark.parametrize(
    "verb",
    [
        ["list", "-n", "0"],
        ["list", "-n", "0", "--json"],
        ["search", "寄到火星"],
        ["search", "寄到火星", "--json"],
        ["show", "ID"],
        ["show", "ID", "--json"],
        ["gaps"],
        ["gaps", "--json"],
        ["export"],
        ["export", "--format", "jsonl"],
        ["stats"],
    ],
)
def test_logged_terminal_escapes_never_reach_the_terminal(db, fx, capsys, monkeypatch, verb):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich writes as to a terminal (styles, links) even under capture
    monkeypatch.setenv("COLUMNS", "200")
    turn = make_legacy_hostile(db, fx)
    code, out, err = run(capsys, *[turn if v == "ID" else v for v in verb], "--db", db)
    assert code == 0, err
    if verb[0] != "stats":  # (stats shows the channel and entry names: no questions)
        assert "火星" in out  # the row is shown ...
    for bad in BAD:  # ... without anything that drives the terminal
        if bad == "pwned" and ("--json" in verb or verb[0] in ("export", "gaps")):
            continue  # JSON (also inside CSV cells and TOML snippets) keeps the text, control characters escaped
        assert bad not in out and bad not in err, (bad, verb)
    if "--json" in verb and verb[0] in ("list", "show", "search"):
        data = json.loads(out)
        shown = [r for r in (data if isinstance(data, list) else [data]) if r["turn_id"] == turn]
        assert shown[0]["question"] == HOSTILE  # JSON keeps the data, escaped ("\u001b[2J" on the terminal)


def test_questions_are_stored_without_escapes_or_nul(tmp_path, capsys, monkeypatch):
    db = tmp_path / "faqbot.db"
    monkeypatch.setenv("FAQBOT_DB", str(db))
    monkeypatch.setenv("FAQBOT_SECRET", "a-test-secret-0123")
    assert main(["ask", "--log", "--json", HOSTILE]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["question"] == CLEAN
    conn = sqlite3.connect(db)
    (question,) = conn.execute("SELECT question FROM turns").fetchone()
    conn.close()
    assert question == CLEAN
    # And the full-text index finds text that a NUL used to cut off.
    code, out, err = run(capsys, "search", "标记[/link]", "--db", db, "--json")
    assert code == 0 and len(json.loads(out)) == 1, err


def test_invalid_utf8_input_is_logged_with_replacement_characters(tmp_path):
    db = tmp_path / "faqbot.db"
    line = b"\xff\xfe\xe7\xa4\xbe\xe4\xbf\x9d\xe5\x8d\xa1\x00\xe6\x80\x8e\xe4\xb9\x88\xe7\x94\xb3\xe9\xa2\x86\n"
    code, out, err = cli(
        "ask",
        "--log",
        "--json",
        stdin=line + "社保卡丢了怎么办\n".encode(),
        env={"FAQBOT_DB": str(db), "FAQBOT_SECRET": "a-test-secret-0123", "LC_ALL": "C.UTF-8"},
    )
    assert code == 0, err
    conn = sqlite3.connect(db)
    questions = [r[0] for r in conn.execute("SELECT question FROM turns ORDER BY ts, id")]
    conn.close()
    assert questions == ["\ufffd\ufffd社保卡怎么申领", "社保卡丢了怎么办"]  # nothing dropped, NUL removed
    assert [json.loads(x)["route"] for x in out.decode().splitlines()] == ["faq", "faq"]


# ------------------------------------------------------------------------------------ 8: CSV formulas
def test_csv_export_neutralises_formulas(db, fx, capsys, tmp_path):
    formulas = {
        "weather": '=HYPERLINK("http://evil.example","点我")',
        "greeting": "+1+1",
        "bus1": "-2+3",
        "bus2": "@SUM(A1:A9)",
        "bus3": "\t=1+1",
        "bus5": "\r=1+1",
        "balance1": "\x1b[0m=1+1",
    }
    conn = sqlite3.connect(db)
    with conn:
        for label, q in formulas.items():
            conn.execute(
                "UPDATE turns SET question = ?, answer = ? WHERE id = ?", (q, "=cmd|' /C calc'!A0", fx.id(label))
            )
    conn.close()
    out_file = tmp_path / "turns.csv"
    code, out, err = run(capsys, "export", "--db", db, "-o", out_file)
    assert code == 0, err
    with out_file.open(encoding="utf-8-sig", newline="") as fh:
        by_id = {r["turn_id"]: r for r in csv.DictReader(fh)}
    for label in formulas:
        cell = by_id[fx.id(label)]["question"]
        assert cell.startswith("'") and cell[1:2] in ("=", "+", "-", "@", "\t", "\n"), (label, cell)
        assert by_id[fx.id(label)]["answer"] == "'=cmd|' /C calc'!A0"
    # Nothing else changes: ordinary text, numbers (a score is a number, not a formula), JSON columns.
    apply_row = by_id[fx.id("apply_tg")]
    assert apply_row["question"] == "电子社保卡怎么申领"
    assert float(apply_row["score"]) > 0 and apply_row["candidates"].startswith("[")
    for r in by_id.values():
        for value in r.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


# ------------------------------------------------------------------------------------ 9: export onto the log
def test_export_refuses_the_database_and_its_companion_files(db, capsys, tmp_path):
    conn = sqlite3.connect(db)  # an open connection keeps -wal and -shm in place
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("SELECT count(*) FROM turns").fetchone()
    before = rows(db)
    (tmp_path / "link.csv").symlink_to(db)
    os.link(db, tmp_path / "hard.csv")
    for target in (
        db,
        f"{db}-wal",
        f"{db}-shm",
        f"{db}-journal",
        tmp_path / "link.csv",
        tmp_path / "hard.csv",
        tmp_path / "." / db.name,
    ):
        for fmt in ("csv", "jsonl"):
            code, out, err = run(capsys, "export", "--db", db, "--format", fmt, "-o", target)
            assert code == 1, (target, err)
            assert "refusing to export onto the conversation log" in err
    conn.close()
    assert rows(db) == before
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()


def test_a_failed_export_keeps_the_old_file_and_leaves_no_partial_one(db, tmp_path, capsys):
    """A disk that fills up mid-export (simulated with RLIMIT_FSIZE: writes past 4 KB fail with EFBIG)."""
    conn = sqlite3.connect(db)
    with conn:  # 20 -> 640 turns: an export of several hundred KB
        for i in range(5):
            conn.execute(
                "INSERT INTO turns (id, conversation_id, ts, channel, via, question, normalized, route, "
                "answer, candidates, context_ids) SELECT id || ?, conversation_id, ts, channel, via, question,"
                " normalized, route, answer, candidates, context_ids FROM turns",
                (f"x{i}",),
            )
    conn.close()
    target = tmp_path / "out" / "turns.csv"
    target.parent.mkdir()
    target.write_text("the previous export\n", encoding="utf-8")
    # 100 KB: more than SQLite's -shm (32 KB) needs, less than the export.
    code, out, err = cli("logs", "export", "--db", db, "-o", target, limits={resource.RLIMIT_FSIZE: 100_000})
    assert code == 1
    one_line_error(err)
    assert "cannot write" in err and str(target) in err
    assert target.read_text(encoding="utf-8") == "the previous export\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["turns.csv"]  # no temporary file left
    # Without the limit the same export replaces the file whole (in-process: only the file counts now).
    code, out, err = run(capsys, "export", "--db", db, "-o", target)
    assert code == 0, err
    with target.open(encoding="utf-8-sig", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == rows(db)


# ------------------------------------------------------------------------------------ 11: foreign / future DBs
def _foreign(tmp_path) -> Path:
    path = tmp_path / "other-app.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('alice')")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("kind", ["foreign", "empty"])
@pytest.mark.parametrize(
    "verb",
    [
        ["purge"],
        ["purge", "--dry-run"],
        ["list"],
        ["stats"],
        ["export"],
        ["compact"],
        ["label", "0123456789abcdef", "out-of-scope", "--curator", "cara"],
    ],
)
def test_a_database_that_is_not_a_log_is_left_alone(tmp_path, capsys, kind, verb):
    path = _foreign(tmp_path) if kind == "foreign" else tmp_path / "empty.db"
    if kind == "empty":
        path.write_bytes(b"")
    before = path.read_bytes()
    code, out, err = run(capsys, *verb, "--db", path)
    assert code == 1
    one_line_error(err)
    assert "is not a faqbot conversation log" in err
    assert path.read_bytes() == before  # not migrated, not even switched to WAL
    assert not Path(f"{path}-wal").exists()


def test_a_log_from_a_newer_faqbot_is_refused_for_writing_but_readable(db, fx, capsys):
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_from_the_future', '2099-01-01')")
    conn.close()
    before = rows(db)
    code, out, err = run(capsys, "purge", "--db", db, "--older-than", "1d")
    assert code == 1
    one_line_error(err)
    assert "newer faqbot" in err and "m999_from_the_future" in err
    assert rows(db) == before
    code, out, err = run(capsys, "list", "--db", db, "--json", "-n", "0")  # review still works
    assert code == 0 and len(json.loads(out)) == before


def test_the_bot_refuses_to_write_a_newer_log(db, capsys, monkeypatch):
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_from_the_future', '2099-01-01')")
    conn.close()
    before = rows(db)
    monkeypatch.setenv("FAQBOT_DB", str(db))
    monkeypatch.setenv("FAQBOT_SECRET", "s" * 16)
    code, out, err = faqbot_main(capsys, "ask", "--log", "社保卡怎么申领")
    assert code == 1
    one_line_error(err)
    assert "newer faqbot" in err
    assert rows(db) == before


def test_review_of_a_log_in_a_read_only_folder(fx):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="faqbot-ro-"))  # outside pytest's 0700 base, so user 65534 can reach it
    try:
        os.chmod(base, 0o755)
        folder = base / "ro"
        folder.mkdir()
        path = folder / "faqbot.db"
        shutil.copy(fx.path, path)  # WAL mode in the header, no -wal or -shm next to it
        os.chmod(path, 0o644)  # a log the curator's account may read
        os.chmod(folder, 0o555)
        code, out, err = cli_as_nobody("logs", "list", "--db", path, "--json", "-n", "0")
        assert code == 0, err
        assert len(json.loads(out)) == rows(path)
        assert sorted(p.name for p in folder.iterdir()) == ["faqbot.db"]
    finally:
        os.chmod(base / "ro", 0o755)
        shutil.rmtree(base)


# ------------------------------------------------------------------------------------ 12: one-line errors
@pytest.mark.parametrize("kind", ["text", "empty", "directory", "missing"])
@pytest.mark.parametrize("verb", ["list", "search", "show", "stats", "gaps", "export", "purge"])
def test_db_paths_that_are_not_logs_give_one_line(tmp_path, capsys, kind, verb):
    path = tmp_path / "thing"
    if kind == "text":
        path.write_text("just some notes\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    args = {"search": ["search", "社保卡"], "show": ["show", "abc"]}.get(verb, [verb])
    code, out, err = run(capsys, *args, "--db", path)
    assert code == 1, err
    one_line_error(err)
    assert str(path) in err


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "-n", "99999999999999999999"],
        ["search", "社保卡", "-n", "-5"],
        ["stats", "--top", "10000000000000"],
        ["gaps", "-n", "1e9"],
        ["export", "-n", "99999999999999999999"],
        ["list", "--since", "99999999999d"],
        ["list", "--since", "0001-01-01T00:00+08:00"],
        ["stats", "--since", "9999999999w"],
        ["purge", "--older-than", "99999999999d"],
        ["purge", "--older-than", "999999999999999999999999h"],
        ["serve", "--port", "99999"],
    ],
)
def test_absurd_numbers_are_usage_errors(db, capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(["logs", *argv, "--db", str(db)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "--help" in err
    one_line_error(err)


def test_export_into_a_missing_folder_or_a_full_device(db, capsys, tmp_path):
    code, out, err = run(capsys, "export", "--db", db, "-o", tmp_path / "no" / "such" / "dir" / "x.csv")
    assert code == 1 and "does not exist" in err
    one_line_error(err)
    if os.path.exists("/dev/full"):
        code, out, err = run(capsys, "export", "--db", db, "-o", "/dev/full")
        assert code == 1 and "No space left on device" in err
        one_line_error(err)
        assert Path("/dev/full").is_char_device()  # written directly, never replaced by a renamed file


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    "argv", [["logs", "list"], ["logs", "export"], ["logs", "show", "ID"], ["ask", "社保卡怎么申领"]]
)
def test_standard_output_on_a_full_disk(db, fx, argv):
    argv = [fx.id("apply_tg") if a == "ID" else a for a in argv]
    with open("/dev/full", "wb") as full:
        p = faqbot(*argv, stdin=b"", stdout=full, env={**clean_environ(), "FAQBOT_DB": str(db)}, timeout=120)
    err = p.stderr.decode()
    assert p.returncode == 1, err
    one_line_error(err)
    assert "cannot write the output" in err and "No space left on device" in err


@pytest.mark.load
def test_purge_on_a_locked_log_says_so(db, capsys):
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock past the busy timeout
    try:
        before = rows_via(holder)
        code, out, err = run(capsys, "purge", "--db", db, "--older-than", "1d")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1
    one_line_error(err)
    assert "locked" in err and str(db) in err
    assert rows(db) == before


def rows_via(conn) -> int:
    return conn.execute("SELECT count(*) FROM turns").fetchone()[0]


def test_ask_log_with_an_unwritable_log_says_so_at_once(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be\n")
    monkeypatch.setenv("FAQBOT_DB", str(blocker / "faqbot.db"))
    monkeypatch.setenv("FAQBOT_SECRET", "a-test-secret-0123")
    started = time.monotonic()
    code, out, err = faqbot_main(capsys, "ask", "--log", "社保卡怎么申领")
    took = time.monotonic() - started
    assert code == 1
    assert "Traceback" not in err
    assert "cannot write the conversation log" in err
    assert out == ""  # no answer that would not be logged
    assert took < 25, took  # it used to answer, then wait 30 s for the writer to give up (so >= 30 s)


def test_no_secret_and_an_unwritable_folder(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x\n")
    monkeypatch.setenv("FAQBOT_DB", str(blocker / "faqbot.db"))
    code, out, err = faqbot_main(capsys, "ask", "--log", "社保卡怎么申领")
    assert code == 1
    one_line_error(err)
    assert "pseudonymization key" in err and "FAQBOT_SECRET" in err


def test_the_review_queue_shows_hostile_text_safely(db, fx, capsys, monkeypatch):
    conn = sqlite3.connect(db)
    with conn:  # every turn, so whichever the queue shows first is hostile
        conn.execute("UPDATE turns SET question = ? || question, guard = ?", (HOSTILE, HOSTILE))
    conn.close()
    set_environ(monkeypatch, {"FAQBOT_CURATOR": "cara", "FORCE_COLOR": "1", "COLUMNS": "200"})
    code, text, err = run(capsys, "review", "--db", db, stdin="q")
    assert code == 0, err
    assert "火星" in text
    for bad in BAD:
        assert bad not in text, bad


def test_the_eval_export_refuses_the_database_too(db, capsys):
    before = db.read_bytes()
    code, out, err = run(capsys, "export", "--reviewed", "--format", "eval", "--db", db, "-o", db)
    assert code == 1 and "refusing to export onto the conversation log" in err
    assert db.read_bytes() == before
