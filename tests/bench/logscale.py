"""The log at a year of traffic: every review command on a log of N turns (built by tests/bench/logbuild.py).

Each command runs as its own `faqbot logs …` process (what a curator runs), timed wall-clock, with its peak RSS
from ``os.wait4``. The same-run baseline is a process that opens the log and runs ``SELECT count(*) FROM turns``.
While `gaps`, `export` and `replay` run, a ``TurnLog`` in this process keeps logging turns (one every 50 ms) and
the time from ``record_turn`` to the commit (``flush()``) is the bot's writer lag.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from tests.bench.common import REPO, clean_env, faqbot_command, percentile
from tests.support.ports import free_port


def _hwm_mb(pid: int) -> float | None:
    """Peak RSS of the process's current image (VmHWM; reset at exec, unlike the fork-inherited ru_maxrss)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _run(cmd: list[str], env: dict, stdout=subprocess.DEVNULL, cap_s: float | None = None) -> dict:
    """Run ``cmd``; with ``cap_s`` stop it after that long (its figures then cover the time it ran)."""
    t0 = time.perf_counter()
    stopped = False
    p = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE, cwd=REPO)
    peak = 0.0
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(p.stderr.read()), daemon=True)
    reader.start()
    out_chunks: list[bytes] = []
    if stdout is subprocess.PIPE:
        out_reader = threading.Thread(target=lambda: out_chunks.append(p.stdout.read()), daemon=True)
        out_reader.start()
    while p.poll() is None:
        hwm = _hwm_mb(p.pid)
        if hwm:
            peak = max(peak, hwm)
        if cap_s is not None and time.perf_counter() - t0 > cap_s and not stopped:
            stopped = True
            p.terminate()
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    reader.join(10)
    err = b"".join(err_chunks).decode(errors="replace")
    return {
        "seconds": seconds,
        "rss_mb": peak,
        "exit": p.returncode,
        "stderr": err[-300:],
        "stopped": stopped,
        "stdout": b"".join(out_chunks).decode(errors="replace")[-2000:] if stdout is subprocess.PIPE else "",
    }


def _baseline(db: Path, env: dict) -> dict:
    code = (
        "import sqlite3,sys; c=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro', uri=True); "
        "print(c.execute('SELECT count(*) FROM turns').fetchone()[0])"
    )
    return _run([sys.executable, "-c", code, str(db)], env)


class _Writer:
    """A TurnLog logging one turn every `interval` s in a thread's event loop; lag = record_turn -> committed."""

    def __init__(self, db: Path, interval: float = 0.05):
        self.db, self.interval = db, interval
        self.lags: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        from bot.answering.types import Conversation, Reply, Route
        from storage.writer import TurnLog

        log = TurnLog(self.db, secret=b"bench-secret-0123456789abcdef")
        await log.start()
        conv = Conversation("telegram", "777", "private", user_id="777")
        try:
            while not self._stop.is_set():
                reply = Reply(route=Route.NONE, text="抱歉", question="社保卡能坐公交吗", normalized="社保卡能坐公交吗")
                t0 = time.perf_counter()
                log.record_turn(conv, reply)
                await log.flush(timeout=60)
                self.lags.append(time.perf_counter() - t0)
                await asyncio.sleep(self.interval)
        finally:
            await log.close()

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)


def _datasette(db: Path, env: dict) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        [*faqbot_command(), "logs", "serve", "--db", str(db), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    name = db.name.rsplit(".", 1)[0]
    out: dict = {}
    try:
        base = f"http://127.0.0.1:{port}/{name}"
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/versions.json", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        # The turns table shows its route and channel facets by default: every turns page below computes them.
        pages = {
            "table": "/turns",
            "facets": "/turns?_facet=route&_facet=channel",
            "search": "/turns?_search=%E7%A4%BE%E4%BF%9D%E5%8D%A1",  # 社保卡, in about a third of the turns
            "search (rare phrase)": "/turns?_search=%E7%A4%BE%E4%BF%9D%E5%8D%A1%E5%AF%86%E7%A0%81",  # 社保卡密码
            "search (no hit)": "/turns?_search=%E4%B8%8D%E5%AD%98%E5%9C%A8%E7%9A%84%E8%AF%8D%E8%AF%AD",
            "saved search query": "/search_questions?q=%E7%A4%BE%E4%BF%9D%E5%8D%A1",
            "summary": "/stats_daily?_facet=route",
        }
        for key, path in pages.items():
            t0 = time.perf_counter()
            body = urllib.request.urlopen(base + path, timeout=120).read()
            text = body.decode(errors="replace")
            h3 = re.search(r"<h3>(.*?)</h3>", text, re.S)
            out[key] = {
                "seconds": time.perf_counter() - t0,
                "bytes": len(body),
                "facet_timed_out": "timed out" in text,
                "facets": re.findall(r'id="facet-[^"]*" data-column="([^"]+)"', text),
                "heading": re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", h3.group(1))).strip()[:160] if h3 else "",
            }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def _size(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


# Commands that print every turn: at a million turns they run for minutes (the CLI redacts secrets from every line
# it prints); past this cap they are stopped and reported with the time and peak memory up to then.
STREAM_CAP_S = 120.0
_STREAMING = {"list -n 0 --json", "list -n 0 (table)", "export --format jsonl"}


def measure(db: Path, *, with_writer: bool = True) -> dict:
    import sqlite3

    env = clean_env(FAQBOT_SECRET="bench-secret-0123456789abcdef")
    fb = faqbot_command()
    conn = sqlite3.connect(db)
    n = conn.execute("SELECT count(*) FROM turns").fetchone()[0]
    some_id = conn.execute("SELECT id FROM turns ORDER BY rowid DESC LIMIT 1 OFFSET 1000").fetchone()[0]
    conn.close()
    res: dict = {"turns": n, "bytes": _size(db), "bytes_per_turn": _size(db) / max(n, 1)}
    res["baseline"] = _baseline(db, env)
    d = ["--db", str(db)]
    commands = {
        "stats (all time)": ["stats", *d],
        "stats --since 30d": ["stats", "--since", "30d", *d],
        "list (first page)": ["list", *d],
        "list --route llm": ["list", "--route", "llm", *d],
        "show ID": ["show", some_id[:14], *d],
        "search 社保卡": ["search", "社保卡", *d],
        "search (no hit)": ["search", "不存在的词语", *d],
        "list -n 0 --json": ["list", "-n", "0", "--json", *d],
        "list -n 0 (table)": ["list", "-n", "0", *d],
        "gaps (default --since 30d)": ["gaps", *d],
        "replay --since 30d": ["replay", "--since", "30d", *d],
        "export --format jsonl": ["export", "--format", "jsonl", *d],
    }
    res["commands"] = {}
    lag_during = {"gaps (default --since 30d)", "replay --since 30d", "export --format jsonl"}
    for label, args in commands.items():
        cap = STREAM_CAP_S if label in _STREAMING and n > 200_000 else None
        if with_writer and label in lag_during:
            with _Writer(db) as w:
                r = _run([*fb, "logs", *args], env, cap_s=cap)
            r["writer_lag_p99_s"] = percentile(w.lags, 99) if w.lags else None
            r["writer_lag_max_s"] = max(w.lags) if w.lags else None
            r["writer_turns"] = len(w.lags)
        else:
            r = _run([*fb, "logs", *args], env, cap_s=cap)
        r["ratio"] = r["seconds"] / res["baseline"]["seconds"]
        res["commands"][label] = r
        print(
            f"[logscale] {n:,} turns: {label}: {r['seconds']:.2f} s, {r['rss_mb']:.0f} MB, exit {r['exit']}", flush=True
        )
    try:
        res["datasette"] = _datasette(db, env)
    except Exception as exc:  # noqa: BLE001 - the figure is reported as missing, the rest of the run stands
        res["datasette"] = {"error": repr(exc)}
    # The same purge twice: on a copy while another process keeps one core busy, then on the log itself.
    copy = db.with_name(db.stem + "-copy.db")
    src, dst = sqlite3.connect(db), sqlite3.connect(copy)
    src.backup(dst)  # page by page, WAL included: the same rowids (the search index refers to them)
    src.close()
    dst.close()
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        res["commands"]["purge --older-than 90d, one core busy"] = _purge(copy, env, res["baseline"]["seconds"])
    finally:
        burner.kill()
        burner.wait()
        for p in (copy, Path(f"{copy}-wal"), Path(f"{copy}-shm")):
            p.unlink(missing_ok=True)
    res["commands"]["purge --older-than 90d"] = _purge(db, env, res["baseline"]["seconds"])
    res["bytes_after_purge"] = _size(db)
    return res


def _purge(db: Path, env: dict, baseline_s: float) -> dict:
    """`logs purge --older-than 90d --json` while a TurnLog keeps writing; its JSON (lock times) goes in the result."""
    with _Writer(db) as w:
        r = _run(
            [*faqbot_command(), "logs", "purge", "--older-than", "90d", "--json", "--db", str(db)],
            env,
            stdout=subprocess.PIPE,
        )
    r["writer_lag_p99_s"] = percentile(w.lags, 99) if w.lags else None
    r["writer_lag_max_s"] = max(w.lags) if w.lags else None
    r["ratio"] = r["seconds"] / baseline_s
    try:
        r["result"] = json.loads(r["stdout"][r["stdout"].index("{") :])
    except ValueError:
        r["result"] = {}
    return r


def log_at_scale(
    sizes: tuple[int, ...] = (100_000, 1_000_000), *, n_base: int = 20_000, workdir: str | None = None
) -> dict:
    """Build logs of each size (real writer, then SQL multiplication) and time every review command on them."""
    from tests.bench.logbuild import build_base, multiply

    out: dict = {"runs": []}
    with tempfile.TemporaryDirectory(prefix="faqbot-logscale-", dir=workdir) as tmp:
        base = Path(tmp) / "base.db"
        t0 = time.perf_counter()
        out["base_routes"] = build_base(base, n_base)
        out["base_seconds"] = time.perf_counter() - t0
        out["n_base"] = n_base
        for size in sizes:
            db = Path(tmp) / f"log{size}.db"
            built = multiply(
                base,
                db,
                size,
                progress=lambda a, b, s: (
                    print(f"[logscale] building {a:,}/{b:,} ({s:.0f} s)", flush=True) if a % 100_000 < n_base else None
                ),
            )
            run = measure(db)
            run["build"] = built
            out["runs"].append(run)
            for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                p.unlink(missing_ok=True)
    return out
