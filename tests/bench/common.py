"""Shared helpers for the benchmarks: statistics, machine description, clean settings and environments."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KNOWLEDGE_DIR = REPO / "knowledge"

# A subprocess must not inherit a token or key that would switch on a transport or the LLM.
_SCRUB_PREFIXES = ("TELEGRAM_", "OPENAI_", "MATRIX_", "FAQBOT_")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary_ms(samples_ns: list[int]) -> dict[str, float]:
    """p50 / p99 / mean / max in milliseconds of samples given in nanoseconds."""
    ms = [v / 1e6 for v in samples_ns]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
        "max_ms": max(ms) if ms else float("nan"),
    }


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra)
    return env


def settings(**overrides):
    """Settings with no LLM, Telegram or Matrix configured, whatever the environment or a .env says."""
    from bot.app.settings import Settings

    base = dict(
        knowledge_dir=KNOWLEDGE_DIR,
        openai_api_key=None,
        openai_base_url=None,
        telegram_bot_token=None,
        matrix_homeserver=None,
        matrix_user_id=None,
        transports=[],
        _env_file=None,
    )
    base.update(overrides)
    return Settings(**base)


def faqbot_command() -> list[str]:
    """The installed `faqbot` console script next to this interpreter, else `python -m bot`."""
    script = Path(sys.executable).parent / "faqbot"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        # BENCHMARKS.md itself is rewritten by every run: its own change does not make the code "uncommitted".
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)BENCHMARKS.md",
            ],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, object]:
    import psutil

    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": __import__("sqlite3").sqlite_version,
        "packages": {
            d: _version(d)
            for d in ("aiogram", "openai", "aiosqlite", "rapidfuzz", "opencc", "aiohttp", "pydantic-settings", "psutil")
        },
        "git": _git_head(),
        "loadavg_at_start": tuple(round(x, 2) for x in load),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


class Timer:
    """`with Timer() as t: ...; t.seconds`"""

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
