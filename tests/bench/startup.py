"""`faqbot ask` one-shot wall time against importing the chat stack, measured in the same run."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.common import REPO, clean_env, faqbot_command

BASELINE_CODE = "import aiogram, openai, aiosqlite, rapidfuzz"
QUESTION = "社保卡丢了怎么办"


def _wall(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, timeout=120)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return dt


def import_profile(args: list[str], env: dict[str, str], cwd: Path, top: int = 12) -> list[dict]:
    """`python -X importtime ARGS`: the top-level imports with the largest cumulative time."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args], env=env, cwd=cwd, capture_output=True, timeout=120
    )
    rows = []
    for line in proc.stderr.decode(errors="replace").splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) == 1:  # one space after "|": a top-level import
            rows.append(
                {"module": m.group(4), "self_ms": int(m.group(1)) / 1000, "cumulative_ms": int(m.group(2)) / 1000}
            )
    rows.sort(key=lambda r: r["cumulative_ms"], reverse=True)
    return rows[:top]


def ask_vs_imports(n: int = 5, *, baseline: str = BASELINE_CODE, warmup: bool = True, profile: bool = True) -> dict:
    """Median wall time of `faqbot ask "社保卡丢了怎么办"` and of `python -c "import aiogram, ..."`, alternating
    the two so that machine load hits both alike; one unmeasured warm-up run of each first (bytecode caches).
    `baseline` / `warmup` / `profile` exist for the smoke test (a cheap baseline, no extra runs)."""
    faqbot = faqbot_command()
    ask_cmd = [*faqbot, "ask", QUESTION]
    base_cmd = [sys.executable, "-c", baseline]
    with tempfile.TemporaryDirectory(prefix="faqbot-bench-") as tmp:
        cwd = Path(tmp)  # no .env here: the defaults (no LLM, no Telegram) apply
        env = clean_env(FAQBOT_DB=str(cwd / "data" / "faqbot.db"))
        if warmup:
            _wall(ask_cmd, env, cwd)
            _wall(base_cmd, env, cwd)
        ask_t, base_t = [], []
        for i in range(n):
            pair = [(ask_cmd, ask_t), (base_cmd, base_t)]
            if i % 2:
                pair.reverse()
            for cmd, out in pair:
                out.append(_wall(cmd, env, cwd))
        ask_med, base_med = statistics.median(ask_t), statistics.median(base_t)
        ratio = ask_med / base_med
        result = {
            "runs": n,
            "ask_command": " ".join(_display(c) for c in ask_cmd),
            "baseline_command": f'{_display(sys.executable)} -c "{baseline}"',
            "ask_median_s": ask_med,
            "ask_min_s": min(ask_t),
            "ask_max_s": max(ask_t),
            "baseline_median_s": base_med,
            "baseline_min_s": min(base_t),
            "baseline_max_s": max(base_t),
            "ratio": ratio,
            "target_ratio": 0.5,
            "ask_imports": import_profile(["-m", "bot", "ask", QUESTION], env, cwd) if profile else [],
        }
        if not profile:
            result["ask_loads"] = []
            return result
        # Which heavy packages did `ask` load at all? (it must not pay for the chat stack)
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, runpy; sys.argv=['faqbot','ask','" + QUESTION + "'];\n"
                "try:\n    runpy.run_module('bot', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                "heavy=[m for m in ('aiogram','openai','aiosqlite','aiohttp','httpx','rich','pydantic','opencc','rapidfuzz') "
                "if m in sys.modules]; print('HEAVY', ','.join(heavy), file=sys.stderr)",
            ],
            env=env,
            cwd=cwd,
            capture_output=True,
            timeout=120,
        )
        m = re.search(r"HEAVY (.*)", probe.stderr.decode(errors="replace"))
        result["ask_loads"] = m.group(1).split(",") if m and m.group(1) else []
        return result


def _display(path: str) -> str:
    try:
        return str(Path(path).relative_to(REPO))
    except ValueError:
        return path
