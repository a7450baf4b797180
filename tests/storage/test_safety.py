"""Pre-created files in shared folders (issue 12, item 10): a pseudonymization key or a log database that is a
symbolic link, a FIFO, another user's file or writable by group/others is refused with a clear message; new
files are created 0600 in 0700 folders. The tests run as root too (CI does): "another user's file" is a file
chowned to uid 65534, which root must refuse just like anyone else."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from bot.cli.main import main
from storage.db import open_db_sync
from storage.safety import UnsafeFileError
from storage.secret_key import load_or_create_secret
from storage.writer import TurnLog

OTHER_UID = 65534  # nobody
ROOT = os.geteuid() == 0
as_root = pytest.mark.skipif(not ROOT, reason="giving a file to another user needs root (CI runs as root)")


pytestmark = pytest.mark.usefixtures("clean_env")


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _attacker_key(path: Path, *, mode=0o600, uid=None) -> None:
    path.write_text("the-attackers-known-key\n")
    os.chmod(path, mode)
    if uid is not None:
        os.chown(path, uid, -1)


def _in_thread(fn, timeout=20.0):
    """Run fn in a thread: a FIFO must not block start-up (if it did, the join would time out)."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "blocked (opened a FIFO?)"
    return result


# ------------------------------------------------------------------------------------ the key
@pytest.mark.parametrize(
    "kind",
    ["group-writable", "other-writable", "symlink", "fifo", "directory", pytest.param("other-owner", marks=as_root)],
)
def test_an_unsafe_key_file_is_refused(tmp_path, kind):
    key = tmp_path / "secret.key"
    if kind == "group-writable":
        _attacker_key(key, mode=0o660)
    elif kind == "other-writable":
        _attacker_key(key, mode=0o606)
    elif kind == "other-owner":
        _attacker_key(key, uid=OTHER_UID)
    elif kind == "symlink":
        target = tmp_path / "attacker.txt"
        _attacker_key(target)
        key.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(key, 0o600)
    else:
        key.mkdir()
    got = _in_thread(lambda: load_or_create_secret(None, key))
    assert isinstance(got.get("error"), UnsafeFileError), got
    message = str(got["error"])
    assert str(key) in message and "\n" not in message
    if kind != "fifo" and kind != "directory":
        assert "the-attackers-known-key" not in message


def test_a_readable_key_is_tightened_and_used(tmp_path):
    key = tmp_path / "secret.key"
    _attacker_key(key, mode=0o644)  # readable by others, but nobody else could have chosen its content
    assert load_or_create_secret(None, key) == b"the-attackers-known-key"
    assert _mode(key) == 0o600


@as_root
def test_faqbot_refuses_another_users_key_in_one_line(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    _attacker_key(folder / "secret.key", uid=OTHER_UID)
    monkeypatch.setenv("FAQBOT_DB", str(folder / "faqbot.db"))
    assert main(["ask", "--log", "社保卡怎么申领"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "belongs to user id 65534" in err and "secret.key" in err
    assert not (folder / "faqbot.db").exists()  # nothing logged with a key someone else knows


def test_a_new_key_and_its_folder_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        key = tmp_path / "a" / "b" / "secret.key"
        load_or_create_secret(None, key)
    finally:
        os.umask(old)
    assert _mode(key) == 0o600
    assert _mode(key.parent) == 0o700 and _mode(key.parent.parent) == 0o700


# ------------------------------------------------------------------------------------ the database
def _make(path: Path, kind: str, tmp_path: Path) -> None:
    if kind == "symlink":
        target = tmp_path / "elsewhere.db"
        open_db_sync(target, readonly=False).close()
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "wal-symlink":
        open_db_sync(path, readonly=False).close()
        Path(f"{path}-wal").symlink_to(tmp_path / "attacker-owned-wal")
    else:
        open_db_sync(path, readonly=False).close()
        if kind == "other-owner":
            os.chown(path, OTHER_UID, -1)
        elif kind == "world-writable":
            os.chmod(path, 0o666)
        elif kind == "group-writable":
            os.chmod(path, 0o660)


DB_KINDS = [
    "symlink",
    "fifo",
    "wal-symlink",
    "world-writable",
    "group-writable",
    pytest.param("other-owner", marks=as_root),
]


@pytest.mark.parametrize("kind", DB_KINDS)
def test_an_unsafe_database_is_refused_for_writing(tmp_path, kind):
    path = tmp_path / "faqbot.db"
    _make(path, kind, tmp_path)
    got = _in_thread(lambda: open_db_sync(path, readonly=False))
    assert isinstance(got.get("error"), UnsafeFileError), got
    assert "refusing to use" in str(got["error"])
    if kind == "symlink":
        conn = sqlite3.connect(tmp_path / "elsewhere.db")
        assert conn.execute("SELECT count(*) FROM turns").fetchone()[0] == 0
        conn.close()


@pytest.mark.parametrize("kind", DB_KINDS)
def test_the_bot_does_not_start_logging_into_an_unsafe_database(tmp_path, kind):
    path = tmp_path / "faqbot.db"
    _make(path, kind, tmp_path)

    async def start():
        log = TurnLog(path, secret=b"s" * 32)
        try:
            await log.start()
        finally:
            await log.close(timeout=1)

    got = _in_thread(lambda: asyncio.run(start()))
    assert isinstance(got.get("error"), UnsafeFileError), got


@pytest.mark.parametrize("kind", DB_KINDS)
def test_purge_refuses_an_unsafe_database_in_one_line(tmp_path, capsys, kind):
    path = tmp_path / "faqbot.db"
    _make(path, kind, tmp_path)
    got = _in_thread(lambda: main(["logs", "purge", "--db", str(path), "--older-than", "1d"]))
    assert got.get("value") == 1, got
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to use" in err


@as_root
def test_review_of_a_log_owned_by_the_bots_account_works(tmp_path, capsys):
    path = tmp_path / "faqbot.db"
    open_db_sync(path, readonly=False).close()
    os.chown(path, OTHER_UID, -1)  # the bot's account owns the log; a curator reviews it read-only
    os.chmod(path, 0o644)
    assert main(["logs", "list", "--db", str(path), "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_review_refuses_a_symlink_or_fifo(tmp_path, capsys, kind):
    path = tmp_path / "faqbot.db"
    _make(path, kind, tmp_path)
    got = _in_thread(lambda: main(["logs", "list", "--db", str(path)]))
    assert got.get("value") == 1, got
    assert "refusing to use" in capsys.readouterr().err


def test_a_new_database_is_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "new" / "data" / "faqbot.db"
        open_db_sync(path, readonly=False).close()
        conn = open_db_sync(path, readonly=False)  # -wal and -shm exist while a connection is open
        try:
            modes = {p.name: _mode(p) for p in path.parent.iterdir()}
        finally:
            conn.close()
    finally:
        os.umask(old)
    assert modes["faqbot.db"] == 0o600
    assert all(m == 0o600 for m in modes.values()), modes
    assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700


def test_a_log_folder_anyone_can_write_is_refused(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)  # no sticky bit: anyone could swap the files after the checks
    with pytest.raises(UnsafeFileError, match="anyone can write"):
        open_db_sync(folder / "faqbot.db", readonly=False)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "world-writable", pytest.param("other-owner", marks=as_root)])
def test_the_notify_request_file_gets_the_same_checks(tmp_path, kind):
    from storage import subscriptions

    path = subscriptions.path_for(tmp_path / "faqbot.db")
    if kind == "symlink":
        (tmp_path / "attacker.db").write_bytes(b"")
        path.symlink_to(tmp_path / "attacker.db")
    elif kind == "fifo":
        os.mkfifo(path, 0o600)
    else:
        path.write_bytes(b"")
        os.chmod(path, 0o666 if kind == "world-writable" else 0o600)
        if kind == "other-owner":
            os.chown(path, OTHER_UID, -1)
    got = _in_thread(
        lambda: subscriptions.subscribe(
            path, channel="telegram", chat_id="42", turn_id="t1", question="社保卡能坐公交吗"
        )
    )
    assert isinstance(got.get("error"), UnsafeFileError), got
    if kind == "symlink":
        assert (tmp_path / "attacker.db").read_bytes() == b""  # no chat id went to the attacker's file


def test_a_new_notify_request_file_is_private(tmp_path):
    from storage import subscriptions

    path = subscriptions.path_for(tmp_path / "data" / "faqbot.db")
    assert subscriptions.subscribe(path, channel="telegram", chat_id="42", turn_id="t1", question="问题")
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
