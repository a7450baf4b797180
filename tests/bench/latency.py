"""In-process answering latency (shipped FAQ and generated knowledge bases), logging on vs off, log writer rows/s."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.bench.common import settings as bench_settings
from tests.bench.common import summary_ms
from tests.bench.queries import query_mix, query_mix_tagged


def _load(kb_dir: Path | None):
    from bot.answering.answerer import Answerer
    from knowledge.loader import load_knowledge

    t0 = time.perf_counter()
    kb = load_knowledge(kb_dir) if kb_dir else load_knowledge()
    t1 = time.perf_counter()
    answerer = Answerer(bench_settings(), kb)
    t2 = time.perf_counter()
    return answerer, {"load_s": t1 - t0, "index_s": t2 - t1}


def _time_match(answerer, questions: list[str]) -> tuple[list[int], list[int], Counter]:
    from bot.answering.types import Conversation

    convs = [Conversation(channel="bench", chat_id=str(i), chat_type="private", user_id=str(i)) for i in range(16)]
    samples: list[int] = []
    cpu: list[int] = []
    routes: Counter = Counter()
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for i, q in enumerate(questions):
        conv = convs[i % len(convs)]
        c0 = cpu_clock()
        t0 = clock()
        reply = answerer.match(q, conv)
        samples.append(clock() - t0)
        cpu.append(cpu_clock() - c0)
        routes[reply.route.value] += 1
    return samples, cpu, routes


async def _time_answer(answerer, questions: list[str]) -> tuple[list[int], list[int]]:
    from bot.answering.types import Conversation

    convs = [Conversation(channel="bench", chat_id=str(i), chat_type="private", user_id=str(i)) for i in range(16)]
    samples: list[int] = []
    cpu: list[int] = []
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for i, q in enumerate(questions):
        conv = convs[i % len(convs)]
        c0 = cpu_clock()
        t0 = clock()
        await answerer.answer(q, conv)
        samples.append(clock() - t0)
        cpu.append(cpu_clock() - c0)
    return samples, cpu


def latency_for_kb(
    kb_dir: Path | None = None, *, n: int = 2000, extra: list[str] | None = None, label: str = "shipped FAQ"
) -> dict:
    """p50/p99 of `Answerer.match` and `await Answerer.answer` (no LLM, no log) over a query mix of `n` questions."""
    answerer, setup = _load(kb_dir)
    tagged = query_mix_tagged(n, extra=extra)
    questions = [q for q, _ in tagged]
    kinds = [k for _, k in tagged]
    _time_match(answerer, questions[: min(200, n)])  # warm-up: OpenCC, regex caches, first-call costs
    # As `faqbot run` does after start-up (bot/app/runner.py): the index is frozen out of the cyclic GC, so a full
    # collection does not re-scan 140,000 phrase objects in the middle of an answer. Unfrozen afterwards.
    gc.collect()
    gc.freeze()
    try:
        match_ns, match_cpu, routes = _time_match(answerer, questions)
        answer_ns, answer_cpu = asyncio.run(_time_answer(answerer, questions))
    finally:
        gc.unfreeze()
    # Which kinds of question make the slowest 1% (by answer CPU time), and each kind's CPU p50.
    slowest = sorted(range(n), key=lambda i: answer_cpu[i], reverse=True)[: max(1, n // 100)]
    by_kind: dict[str, list[int]] = {}
    for k, c in zip(kinds, answer_cpu, strict=False):
        by_kind.setdefault(k, []).append(c)
    return {
        "label": label,
        "entries": len(answerer.kb.entries),
        "phrases": len(answerer.matcher.phrases),
        "questions": n,
        "routes": dict(routes),
        "match": summary_ms(match_ns),
        "answer": summary_ms(answer_ns),
        "match_cpu": summary_ms(match_cpu),
        "answer_cpu": summary_ms(answer_cpu),
        "slowest_1pct_kinds": dict(Counter(kinds[i] for i in slowest).most_common()),
        "answer_cpu_p50_by_kind": {k: summary_ms(v)["p50_ms"] for k, v in sorted(by_kind.items())},
        "answer_p99_without_long_ms": summary_ms([t for t, k in zip(answer_ns, kinds, strict=False) if k != "long"])[
            "p99_ms"
        ],
        **setup,
    }


def answer_latency(sizes: tuple[int, ...] = (0, 1000, 10000), *, n: int = 2000, workdir: Path | None = None) -> dict:
    """Latency on the shipped FAQ (size 0) and on generated knowledge bases of the given total sizes."""
    from tests.bench.synth import generate_knowledge

    out: dict = {"runs": [], "targets": {"shipped_p99_ms": 2.0, "10000_p99_ms": 5.0}}
    with tempfile.TemporaryDirectory(prefix="faqbot-bench-", dir=workdir) as tmp:
        for size in sizes:
            if size == 0:
                out["runs"].append(latency_for_kb(None, n=n))
                continue
            t0 = time.perf_counter()
            kb_dir, probes = generate_knowledge(Path(tmp) / f"kb{size}", size)
            gen_s = time.perf_counter() - t0
            run = latency_for_kb(kb_dir, n=n, extra=probes, label=f"{size:,} entries (shipped + generated)")
            run["generate_s"] = gen_s
            out["runs"].append(run)
    return out


# -- logging on vs off ------------------------------------------------------------------------------
async def _log_compare(n: int, block: int, db: Path) -> dict:
    from bot.answering.answerer import Answerer
    from bot.answering.types import Conversation
    from knowledge.loader import load_knowledge
    from storage.writer import TurnLog

    kb = load_knowledge()
    s = bench_settings(db=db)
    turn_log = TurnLog(db, secret=b"bench-secret-0123456789abcdef")
    await turn_log.start()
    # A third side for diagnosis: the same record_turn (masking, HMAC, JSON, queueing) with no writer running,
    # so the difference between it and "on" is what the writer thread costs the answering path.
    import logging

    quiet = logging.getLogger("faqbot.bench.unwritten")
    quiet.disabled = True
    unwritten = TurnLog(db.with_name("unused.db"), secret=b"bench-secret-0123456789abcdef", logger=quiet)
    off = Answerer(s, kb)
    on = Answerer(s, kb, turn_sink=turn_log)
    queued = Answerer(s, kb, turn_sink=unwritten)
    questions = query_mix(n, seed=23)
    convs = [
        Conversation(channel="bench", chat_id=str(1000 + i), chat_type="private", user_id=str(1000 + i))
        for i in range(32)
    ]
    for q in questions[:100]:  # warm-up
        await off.answer(q, convs[0])
        await on.answer(q, convs[0])
        await queued.answer(q, convs[0])
    await turn_log.flush()
    warm = turn_log.committed
    samples: dict[str, list[int]] = {"off": [], "on": [], "queued": []}
    cpu: dict[str, list[int]] = {"off": [], "on": [], "queued": []}
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    gc.collect()
    t_start = time.perf_counter()
    for start in range(0, n, block):
        chunk = questions[start : start + block]
        # Rotate which side goes first, so drift and the writer's leftovers hit all sides alike.
        sides = [("off", off), ("on", on), ("queued", queued)]
        k = (start // block) % 3
        order = sides[k:] + sides[:k]
        for name, answerer in order:
            for i, q in enumerate(chunk):
                c0 = cpu_clock()
                t0 = clock()
                await answerer.answer(q, convs[i % len(convs)])
                samples[name].append(clock() - t0)
                cpu[name].append(cpu_clock() - c0)
                await asyncio.sleep(0)  # like a chat server between messages: lets the writer task run
    answering_s = time.perf_counter() - t_start
    t_flush = time.perf_counter()
    await turn_log.flush()
    flush_s = time.perf_counter() - t_flush
    logged = turn_log.committed - warm
    transactions = turn_log.transactions
    sync = await _writer_pragmas(turn_log)
    await turn_log.close()
    await unwritten.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM turns").fetchone()[0]
    off_s, on_s = summary_ms(samples["off"]), summary_ms(samples["on"])
    off_c, on_c = summary_ms(cpu["off"]), summary_ms(cpu["on"])
    q_s = summary_ms(samples["queued"])
    return {
        "questions_per_side": n,
        "off": off_s,
        "on": on_s,
        "ratio_p50": on_s["p50_ms"] / off_s["p50_ms"],
        "ratio_mean": on_s["mean_ms"] / off_s["mean_ms"],
        "ratio_p99": on_s["p99_ms"] / off_s["p99_ms"],
        "queued_only": q_s,
        "ratio_p50_queued_only": q_s["p50_ms"] / off_s["p50_ms"],
        "off_cpu": off_c,
        "on_cpu": on_c,
        "cpu_ratio_p50": on_c["p50_ms"] / off_c["p50_ms"],
        "cpu_ratio_mean": on_c["mean_ms"] / off_c["mean_ms"],
        "turns_logged": logged,
        "rows_in_db": rows,
        "transactions": transactions,
        "answering_s": answering_s,
        "final_flush_s": flush_s,
        "target_ratio": 1.1,
        "writer_pragmas": sync,
    }


async def _writer_pragmas(turn_log) -> dict:
    """journal_mode / synchronous as set on the writer's own connection (what the claim is about)."""
    out = await turn_log.connection_pragmas()
    if "synchronous" in out:
        out["synchronous"] = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(out["synchronous"], out["synchronous"])
    return out


def logging_overhead(n: int = 3000, *, block: int = 100, workdir: Path | None = None) -> dict:
    """Answer latency with the SQLite TurnLog (WAL, synchronous=FULL) on vs off, interleaved in one run."""
    with tempfile.TemporaryDirectory(prefix="faqbot-bench-", dir=workdir) as tmp:
        return asyncio.run(_log_compare(n, block, Path(tmp) / "log.db"))


async def _writer_rows(n: int, db: Path) -> dict:
    from bot.answering.answerer import Answerer
    from bot.answering.types import Conversation
    from storage.writer import TurnLog

    answerer = Answerer(bench_settings(db=db))
    questions = query_mix(min(n, 500), seed=5)
    replies = [answerer.match(q) for q in questions]
    convs = [
        Conversation(channel="telegram", chat_id=str(5000 + i), chat_type="private", user_id=str(5000 + i))
        for i in range(200)
    ]
    turn_log = TurnLog(db, secret=b"bench-secret-0123456789abcdef")
    await turn_log.start()
    await turn_log.flush()
    from bot.answering.types import new_turn_id

    items = []
    for i in range(n):
        r = replies[i % len(replies)]
        r2 = type(r)(**{**r.__dict__, "turn_id": f"{new_turn_id()}{i:08x}"})
        items.append((convs[i % len(convs)], r2))
    t0 = time.perf_counter()
    for conv, reply in items:
        turn_log.record_turn(conv, reply)
    t_recorded = time.perf_counter()
    await turn_log.flush()
    t1 = time.perf_counter()
    committed, transactions = turn_log.committed, turn_log.transactions
    pragmas = await _writer_pragmas(turn_log)
    await turn_log.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM turns").fetchone()[0]
    return {
        "rows": n,
        "committed": committed,
        "rows_in_db": rows,
        "transactions": transactions,
        "batch_max": turn_log.batch_max,
        "writer_pragmas": pragmas,
        "record_us_per_row": (t_recorded - t0) / n * 1e6,
        "seconds": t1 - t0,
        "rows_per_s": n / (t1 - t0),
        "db_bytes": db.stat().st_size
        + (db.with_name(db.name + "-wal").stat().st_size if db.with_name(db.name + "-wal").exists() else 0),
    }


def writer_throughput(n: int = 20000, *, workdir: Path | None = None) -> dict:
    """Rows/s of the TurnLog writer (batched transactions, WAL, synchronous=FULL) for `n` turns recorded at once."""
    with tempfile.TemporaryDirectory(prefix="faqbot-bench-", dir=workdir) as tmp:
        return asyncio.run(_writer_rows(n, Path(tmp) / "log.db"))
