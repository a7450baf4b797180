"""Telegram end to end: `faqbot run` (real aiogram long polling, SQLite log on) against the loopback fake Bot API,
and a bare aiogram echo bot on the same harness, each in its own process.

Per bot and round: time from process start to the first answer delivered through the fake, resident memory
idle (after the first answer), and messages/s for a backlog of N messages pushed at once, one per user. The two
bots alternate, so machine load hits both alike. The last faqbot run goes on with steady traffic (waves of 200,
each pushed when the previous one is answered) up to 10,000 messages in all, with its RSS every 2,000, then a
burst of 4 messages from each of `burst_users` users at once (how many get a busy/throttle notice instead of an
answer). The fake runs in this process (one core); the bot in its own.
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.common import REPO, clean_env, faqbot_command
from tests.bench.queries import query_mix


def missing() -> str | None:
    for mod in ("bot.telegram.app", "bot.app.runner"):
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
        self.methods: dict[str, int] = {}  # every Bot API call, by method

    def update(self) -> None:
        calls = self.fake.calls
        end = len(calls)
        for c in calls[self.pos : end]:
            self.methods[c.method] = self.methods.get(c.method, 0) + 1
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


async def _burst(fake, proc, counter: _Counter, questions: list[str], n: int, per_user: int, first_user: int) -> dict:
    """Push n messages at once (per_user from each user) and wait for n sendMessage calls."""
    users = max(1, n // per_user)
    base_sent, base_notices = counter.sent, counter.notice_count
    counter.update()
    methods0 = dict(counter.methods)
    cpu0, harness0 = _cpu_s(proc.pid), time.process_time()
    t0 = time.monotonic()
    for i in range(n):
        uid = first_user + (i % users)
        fake.push_update(fake.message_update(questions[i % len(questions)], user_id=uid))
    await counter.wait(base_sent + n, 60 + n / 20, proc, poll=0.02)
    elapsed = counter.last_ts - t0
    cpu1, harness1 = _cpu_s(proc.pid), time.process_time()
    api_calls = {m: c - methods0.get(m, 0) for m, c in counter.methods.items() if c - methods0.get(m, 0)}
    return {
        "api_calls": api_calls,  # Bot API calls during the burst, by method
        "messages": n,
        "users": users,
        "seconds": elapsed,
        "messages_per_s": n / elapsed if elapsed > 0 else float("nan"),
        "notices": counter.notice_count - base_notices,  # busy / throttled notices instead of an answer
        "bot_cpu_ms_per_message": (cpu1 - cpu0) / n * 1000,
        "bot_cpu_share": (cpu1 - cpu0) / elapsed if elapsed > 0 else float("nan"),
        "harness_cpu_share": (harness1 - harness0) / elapsed if elapsed > 0 else float("nan"),
    }


async def _steady(fake, proc, counter: _Counter, questions: list[str], total: int, wave: int, first_user: int) -> dict:
    """Waves of `wave` messages (one per new user), each pushed when the previous one is answered: steady
    traffic rather than a backlog. RSS after every 2,000 messages."""
    base = counter.sent
    rss: list[tuple[int, float]] = []
    t0 = time.monotonic()
    cpu0 = _cpu_s(proc.pid)
    done = 0
    while done < total:
        k = min(wave, total - done)
        for i in range(k):
            fake.push_update(fake.message_update(questions[(done + i) % len(questions)], user_id=first_user + done + i))
        done += k
        await counter.wait(base + done, 60 + k / 10, proc, poll=0.005)
        if done % 2000 == 0 or done == total:
            rss.append((done, _rss_mb(proc.pid)))
    elapsed = counter.last_ts - t0
    return {
        "messages": total,
        "wave": wave,
        "seconds": elapsed,
        "messages_per_s": total / elapsed,
        "bot_cpu_ms_per_message": (_cpu_s(proc.pid) - cpu0) / total * 1000,
        "rss_mb": rss,
    }


async def _drive(
    cmd: list[str],
    env: dict[str, str],
    cwd: Path,
    n: int,
    fake,
    *,
    log_path: Path,
    first_user: int,
    notices: tuple[str, ...] = (),
    burst_users: int = 0,
    steady: int = 0,
    settle: float = 1.0,
) -> dict:
    """Start the bot with one question waiting; time to its answer; RSS idle; then a backlog of n messages
    pushed at once (one per user); optionally steady waves up to `steady` messages in all, and a burst of 4
    messages from each of `burst_users` users; SIGTERM and the exit code."""
    questions = query_mix(max(n, 2000), seed=53)
    # Only text that gets a text answer: the echo bot cannot echo empty input, and both sides get the same mix.
    questions = [q for q in questions if q.strip()] or ["社保卡丢了怎么办"]
    fake.push_update(fake.message_update("社保卡丢了怎么办", user_id=first_user))
    counter = _Counter(fake, notices)
    t_spawn = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    expected = 1
    try:
        await counter.wait(1, 120, proc, poll=0.002)
        first_answer_s = counter.last_ts - t_spawn
        await asyncio.sleep(settle)
        idle_rss = _rss_mb(proc.pid)
        # The backlog: n messages pushed at once, one per user (a second message from a user still being answered
        # gets a "busy" notice from faqbot instead of an answer; that case is the burst below).
        load = await _burst(fake, proc, counter, questions, n, 1, first_user + 1)
        expected += n
        await asyncio.sleep(settle / 2)
        loaded_rss = _rss_mb(proc.pid)
        steady_out = None
        if steady > n:
            steady_out = await _steady(fake, proc, counter, questions, steady - n, 200, first_user + 1 + n)
            steady_out["rss_mb"] = [(n + d, m) for d, m in steady_out["rss_mb"]]  # messages in all, not per phase
            expected += steady - n
        burst = None
        if burst_users:
            burst = await _burst(fake, proc, counter, questions, 4 * burst_users, 4, first_user + 1 + max(n, steady))
            expected += 4 * burst_users
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
    return {
        "command": " ".join(_display(c) for c in cmd),
        "start_to_first_answer_s": first_answer_s,
        "idle_rss_mb": idle_rss,
        "load": load,
        "rss_after_mb": loaded_rss,
        "steady": steady_out,
        "burst": burst,
        "sent_total": counter.sent,
        "expected": expected,
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


async def _run(n: int, rounds: int, steady: int, burst_users: int, bots: tuple[str, ...], settle: float) -> dict:
    import sqlite3
    import statistics

    from bot.answering import texts
    from tests.fakes.telegram_api import FakeBotAPI

    runs: dict[str, list[dict]] = {"echo": [], "faqbot": []}
    with tempfile.TemporaryDirectory(prefix="faqbot-bench-") as tmp:
        cwd = Path(tmp)
        for r in range(rounds):
            last = r == rounds - 1
            for key, cmd in (
                ("echo", [sys.executable, "-m", "tests.bench.echo_bot"]),
                ("faqbot", [*faqbot_command(), "run"]),
            ):
                if key not in bots:
                    continue
                db = cwd / f"{key}{r}.db"
                async with FakeBotAPI() as fake:
                    env = clean_env(
                        TELEGRAM_BOT_TOKEN=fake.token,
                        TELEGRAM_API_URL=fake.base_url,
                        FAQBOT_DB=str(db),
                        FAQBOT_LOG_LEVEL="WARNING",
                    )
                    if key == "echo":
                        env["PYTHONPATH"] = str(REPO)
                    is_faqbot_last = key == "faqbot" and last
                    res = await _drive(
                        cmd,
                        env,
                        cwd if key == "faqbot" else REPO,
                        n,
                        fake,
                        log_path=cwd / f"{key}{r}.log",
                        first_user=100_000,
                        notices=(texts.BUSY_LLM, texts.THROTTLED),
                        burst_users=burst_users if is_faqbot_last else 0,
                        steady=steady if is_faqbot_last else 0,
                        settle=settle,
                    )
                if res["exit_code"] != 0 or res["failed_sends"]:
                    res["log_tail"] = (cwd / f"{key}{r}.log").read_text(errors="replace")[-1500:]
                if key == "faqbot":
                    with sqlite3.connect(db) as conn:
                        res["turns_logged"] = conn.execute("SELECT count(*) FROM turns").fetchone()[0]
                runs[key].append(res)
    out: dict = {"rounds": rounds, "backlog": n, "target_ratio": 0.5}
    for key, rs in runs.items():
        if rs:
            out[key] = {
                "runs": rs,
                "messages_per_s": statistics.median(x["load"]["messages_per_s"] for x in rs),
                "start_to_first_answer_s": statistics.median(x["start_to_first_answer_s"] for x in rs),
            }
    if "faqbot" in out and "echo" in out:
        out["ratio_messages_per_s"] = out["faqbot"]["messages_per_s"] / out["echo"]["messages_per_s"]
    return out


def telegram_bench(
    n: int = 3000,
    rounds: int = 3,
    steady: int = 10000,
    burst_users: int = 200,
    *,
    bots: tuple[str, ...] = ("echo", "faqbot"),
    settle: float = 1.0,
) -> dict:
    """Echo bot and `faqbot run` on the same harness, alternating, `rounds` times each: a backlog of `n` messages
    pushed at once. The last faqbot run then takes steady waves up to `steady` messages in all (RSS along the
    way) and a burst of 4 messages from each of `burst_users` users. `bots` / `settle` (seconds before reading
    the RSS) exist for the smoke test."""
    why = missing()
    if why:
        return {"skipped": why}
    return asyncio.run(_run(n, rounds, steady, burst_users, tuple(bots), settle))
