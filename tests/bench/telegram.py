"""Telegram end to end: `faqbot run` (real aiogram long polling, SQLite log on) against the loopback fake Bot API,
and a bare aiogram echo bot on the same harness, each in its own process.

Per bot: time from process start to the first answer delivered through the fake, resident memory idle (after
the first answer) and after the load, and messages/s for N messages pushed at once, one per user. For faqbot,
then a burst of 4 messages from each of `burst_users` users at once: how many got a busy/throttle notice instead
of an answer. The fake runs in this process; the bot in its own.
"""
from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.common import REPO, clean_env, faqbot_command
from tests.bench.queries import query_mix


def missing() -> str | None:
    for mod in ("bot.telegram.app", "bot.runner"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not there yet"
    try:
        import aiogram  # noqa: F401
    except ImportError as exc:
        return f"aiogram is not importable: {exc}"
    return None


class _Counter:
    """Counts successful sendMessage calls as they arrive (incrementally: the call list gets long)."""

    def __init__(self, fake, notices: tuple[str, ...] = ()):
        self.fake = fake
        self.notices = notices
        self.pos = len(fake.calls)
        self.sent = 0
        self.notice_count = 0
        self.last_ts = 0.0

    def update(self) -> None:
        calls = self.fake.calls
        end = len(calls)
        for c in calls[self.pos:end]:
            if c.method == "sendMessage":
                self.sent += 1
                self.last_ts = c.ts
                if c.params.get("text") in self.notices:
                    self.notice_count += 1
        self.pos = end

    async def wait(self, target: int, timeout: float, proc: subprocess.Popen, poll: float = 0.01) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.update()
            if self.sent >= target:
                return
            if proc.poll() is not None:
                raise RuntimeError(f"the bot exited with {proc.returncode} after {self.sent} of {target} answers")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.sent} of {target} answers after {timeout:.0f} s")
            await asyncio.sleep(poll)


def _rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def _cpu_s(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


async def _burst(fake, proc, counter: _Counter, questions: list[str], n: int, per_user: int,
                 first_user: int) -> dict:
    """Push n messages at once (per_user from each user) and wait for n sendMessage calls."""
    users = max(1, n // per_user)
    base_sent, base_notices = counter.sent, counter.notice_count
    cpu0, harness0 = _cpu_s(proc.pid), time.process_time()
    t0 = time.monotonic()
    for i in range(n):
        uid = first_user + (i % users)
        fake.push_update(fake.message_update(questions[i % len(questions)], user_id=uid))
    await counter.wait(base_sent + n, 60 + n / 20, proc, poll=0.02)
    elapsed = counter.last_ts - t0
    cpu1, harness1 = _cpu_s(proc.pid), time.process_time()
    return {
        "messages": n,
        "users": users,
        "seconds": elapsed,
        "messages_per_s": n / elapsed if elapsed > 0 else float("nan"),
        "notices": counter.notice_count - base_notices,  # busy / throttled notices instead of an answer
        "bot_cpu_ms_per_message": (cpu1 - cpu0) / n * 1000,
        "bot_cpu_share": (cpu1 - cpu0) / elapsed if elapsed > 0 else float("nan"),
        "harness_cpu_share": (harness1 - harness0) / elapsed if elapsed > 0 else float("nan"),
    }


async def _drive(cmd: list[str], env: dict[str, str], cwd: Path, n: int, fake, *, log_path: Path,
                 first_user: int, notices: tuple[str, ...] = (), burst_users: int = 0, settle: float = 1.0) -> dict:
    questions = query_mix(max(n, 100), seed=53)
    # Only text that gets a text answer: the echo bot cannot echo empty input, and both sides get the same mix.
    questions = [q for q in questions if q.strip()] or ["社保卡丢了怎么办"]
    fake.push_update(fake.message_update("社保卡丢了怎么办", user_id=first_user))
    counter = _Counter(fake, notices)
    t_spawn = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        await counter.wait(1, 120, proc, poll=0.002)
        first_answer_s = counter.last_ts - t_spawn
        await asyncio.sleep(settle)
        idle_rss = _rss_mb(proc.pid)
        # The load: n messages pushed at once, one per user (a second message from a user still being answered
        # would get a "busy" notice from faqbot instead of an answer; that case is the burst below).
        load = await _burst(fake, proc, counter, questions, n, 1, first_user + 1)
        await asyncio.sleep(settle / 2)
        loaded_rss = _rss_mb(proc.pid)
        burst = None
        if burst_users:
            burst = await _burst(fake, proc, counter, questions, 4 * burst_users, 4, first_user + 1 + n)
        counter.update()
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = await asyncio.to_thread(proc.wait, 10)
        stop_s = time.monotonic() - t_term
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    failed = [c for c in fake.calls if c.method == "sendMessage" and c.failed]
    expected = 1 + n + (4 * burst_users if burst_users else 0)
    return {
        "command": " ".join(_display(c) for c in cmd),
        "start_to_first_answer_s": first_answer_s,
        "idle_rss_mb": idle_rss,
        "load": load,
        "rss_after_mb": loaded_rss,
        "burst": burst,
        "sent_total": counter.sent,
        "extra_sends": counter.sent - expected,
        "failed_sends": len(failed),
        "exit_code": code,
        "stop_s": stop_s,
    }


def _display(part: str) -> str:
    try:
        return str(Path(part).relative_to(REPO))
    except ValueError:
        return part


async def _run(n_echo: int, n_faqbot: int, burst_users: int, bots: tuple[str, ...], settle: float) -> dict:
    from bot import texts
    from tests.fakes.telegram_api import FakeBotAPI

    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="faqbot-bench-") as tmp:
        cwd = Path(tmp)
        for key, cmd, n in (
            ("echo", [sys.executable, "-m", "tests.bench.echo_bot"], n_echo),
            ("faqbot", [*faqbot_command(), "run"], n_faqbot),
        ):
            if key not in bots:
                continue
            async with FakeBotAPI() as fake:
                env = clean_env(TELEGRAM_BOT_TOKEN=fake.token, TELEGRAM_API_URL=fake.base_url,
                                FAQBOT_DB=str(cwd / f"{key}.db"), FAQBOT_LOG_LEVEL="WARNING")
                if key == "echo":
                    env["PYTHONPATH"] = str(REPO)
                out[key] = await _drive(cmd, env, cwd, n, fake, log_path=cwd / f"{key}.log", first_user=100_000,
                                        notices=(texts.BUSY_LLM, texts.THROTTLED),
                                        burst_users=burst_users if key == "faqbot" else 0, settle=settle)
                if out[key]["exit_code"] != 0 or out[key]["failed_sends"]:
                    out[key]["log_tail"] = (cwd / f"{key}.log").read_text(errors="replace")[-1500:]
        if "faqbot" in out:
            import sqlite3

            with sqlite3.connect(cwd / "faqbot.db") as conn:
                out["faqbot"]["turns_logged"] = conn.execute("SELECT count(*) FROM turns").fetchone()[0]
    if "faqbot" in out and "echo" in out:
        out["ratio_messages_per_s"] = out["faqbot"]["load"]["messages_per_s"] / out["echo"]["load"]["messages_per_s"]
    out["target_ratio"] = 0.5
    return out


def telegram_bench(n_echo: int = 10000, n_faqbot: int = 10000, burst_users: int = 200, *,
                   bots: tuple[str, ...] = ("echo", "faqbot"), settle: float = 1.0) -> dict:
    """Echo bot and `faqbot run` on the same harness (see the module docstring). `bots` and `settle` (seconds
    to wait before reading the RSS) exist for the smoke test."""
    why = missing()
    if why:
        return {"skipped": why}
    return asyncio.run(_run(n_echo, n_faqbot, burst_users, tuple(bots), settle))
