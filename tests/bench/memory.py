"""Resident memory (RSS) of the answering core, idle and after many questions, in a fresh child process.

Run in a child so the figure is the core's own, not the benchmark runner's: `python -m tests.bench.memory N DB`
prints one JSON object. The core runs with the real SQLite log (WAL, synchronous=FULL) on, as a bot would.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.bench.common import REPO, clean_env


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


async def _child(n: int, db: Path, users: int = 1000) -> dict:
    from bot.answering.types import Conversation
    from bot.app.services import build_services
    from tests.bench.common import settings
    from tests.bench.queries import query_mix

    gc.collect()
    bare = _rss_mb()
    services = await build_services(settings(db=db), with_log=True, with_llm=False)
    answerer = services.answerer
    questions = query_mix(1000, seed=31)
    first = Conversation(channel="bench", chat_id="0")
    await answerer.answer("社保卡丢了怎么办", first)  # first-question costs (OpenCC t2s, regexes)
    await services.turn_log.flush()
    gc.collect()
    idle = _rss_mb()
    await answerer.answer("社保卡遺失了要怎麼補辦", first)  # the first Traditional question loads OpenCC s2tw
    gc.collect()
    after_traditional = _rss_mb()
    # One conversation per simulated user, as a chat adapter keeps them (history bounded to 6 exchanges each).
    convs: dict[int, Conversation] = {}
    checkpoints = []
    done = 0
    for mark in sorted({max(1, n // 2), n, 2 * n, 3 * n}):
        while done < mark:
            uid = done % users
            conv = convs.get(uid)
            if conv is None:
                conv = convs[uid] = Conversation(
                    channel="telegram", chat_id=str(uid), chat_type="private", user_id=str(uid)
                )
            await answerer.answer(questions[done % len(questions)], conv)
            done += 1
            if done % 200 == 0:
                await asyncio.sleep(0.001)  # let the log writer commit, as a running bot would between messages
        await services.turn_log.flush()
        gc.collect()
        checkpoints.append({"questions": done, "rss_mb": _rss_mb()})
    committed = services.turn_log.committed
    await services.aclose()
    return {
        "interpreter_rss_mb": bare,
        "idle_rss_mb": idle,
        "after_traditional_rss_mb": after_traditional,
        "checkpoints": checkpoints,
        "turns_logged": committed,
        "users": len(convs),
    }


def core_memory(n: int = 10000) -> dict:
    """RSS of the answering core (with the SQLite log) idle and after n/2, n, 2n and 3n questions from 1,000
    simulated users (whose 6-exchange histories are full after 6,000); the steps n -> 2n -> 3n show whether
    memory keeps growing or settles."""
    with tempfile.TemporaryDirectory(prefix="faqbot-bench-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.bench.memory", str(n), str(Path(tmp) / "mem.db")],
            cwd=REPO,
            env=clean_env(),
            capture_output=True,
            timeout=600,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    at = {c["questions"]: c["rss_mb"] for c in out["checkpoints"]}
    out["rss_after_n_mb"] = at[n]
    out["growth_idle_to_n_mb"] = at[n] - out["idle_rss_mb"]
    out["growth_n_to_2n_mb"] = at[2 * n] - at[n]
    out["growth_2n_to_3n_mb"] = at[3 * n] - at[2 * n]
    out["n"] = n
    out["command"] = f"python -m tests.bench.memory {n} <tmp>/mem.db"
    return out


if __name__ == "__main__":
    count, path = int(sys.argv[1]), Path(sys.argv[2])
    print(json.dumps(asyncio.run(_child(count, path))))
