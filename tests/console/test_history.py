"""The interactive shell's history file keeps no raw personal number (issue 12.5): `faqbot shell` runs on a real
pseudo-terminal, a question with an ID and a card number is typed, and the history file is read afterwards."""

from __future__ import annotations

import os
import select
import stat
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

pty = pytest.importorskip("pty")

ID_NUMBER = "11010519491231002X"
CARD = "6222 0212 3456 7890 128"
PHONE = "138.1234.5678"


def _read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {marker!r} on the terminal; got {bytes(seen)[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen.extend(chunk)


def test_shell_history_holds_no_raw_personal_numbers(tmp_path, subprocess_env):
    history = tmp_path / "history"
    # a history written by an older version, with a raw phone number in it
    history.write_text("社保卡丢了怎么办\n我的手机13812345678收不到验证码\n", encoding="utf-8")
    env = dict(subprocess_env, FAQBOT_HISTORY=str(history), TERM="dumb")
    env.pop("FAQBOT_LOG_LEVEL", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "shell"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=REPO,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    seen = bytearray()
    try:
        prompt = "您的问题> ".encode()
        _read_until(master, prompt, seen)
        os.write(master, f"我的身份证{ID_NUMBER}，卡号{CARD}，电话{PHONE}，社保卡丢了怎么办\r".encode())
        seen.clear()
        _read_until(master, prompt, seen)  # answered, asking for the next question
        os.write(master, b"/quit\r")
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0
    saved = history.read_text(encoding="utf-8")
    assert "[身份证号]" in saved and "[银行卡号]" in saved and "[手机号]" in saved, saved
    flat = "".join(ch for ch in saved if ch.isdigit())
    for raw in (ID_NUMBER[:17], CARD.replace(" ", ""), "13812345678", "1234.5678"):
        assert raw not in saved and raw not in flat, saved
    assert "社保卡丢了怎么办" in saved  # the history still works
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
