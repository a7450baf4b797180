"""Builds a large conversation log for the log-at-scale benchmark: real writer first, then SQL multiplication.

1. A *base* log of ``n_base`` turns is written by the real ``TurnLog`` (masking, pseudonyms, JSON, triggers) from
   questions answered by the real ``Answerer.match``: the benchmark query mix, plus unanswered questions built from
   city x group x topic x ask vocabulary (thousands of distinct wordings the shipped FAQ cannot answer). A share of
   the clarify/none turns is turned into LLM turns (context ids, model, raw output, guard verdict), as the LLM
   fallback would log them; feedback (👍, 👎, none of these) is recorded through ``record_feedback``.
2. The big log gets the schema from ``storage.db`` (migrations), 50,000 conversations, and copies of the base turns
   inserted with SQL in time order: copy k covers the k-th slice of the last ``days`` days, ids are time-ordered
   turn ids made from the new timestamp, conversations rotate over all users, latencies vary. Every insert goes
   through the schema's triggers (search index, daily summary), as the writer's inserts do.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from tests.bench.common import settings as bench_settings
from tests.bench.queries import query_mix
from tests.bench.synth import ASKS, CITIES, GROUPS, TOPICS

SECRET = b"bench-secret-0123456789abcdef"


def unanswered_questions(n: int, seed: int = 3) -> list[str]:
    """`n` questions about other services (city x group x topic x ask), most of them distinct."""
    rng = random.Random(seed)
    styles = [
        "{city}{group}{topic}{ask}",
        "请问{city}的{topic}{ask}",
        "{group}在{city}{topic}{ask}",
        "{topic}{ask}",
        "我是{city}{group}，{topic}{ask}",
    ]
    out = []
    for _ in range(n):
        out.append(
            rng.choice(styles).format(
                city=rng.choice(CITIES), group=rng.choice(GROUPS), topic=rng.choice(TOPICS), ask=rng.choice(ASKS)
            )
        )
    return out


async def _write_base(path: Path, n: int, seed: int) -> dict:
    from bot.answering.answerer import Answerer
    from bot.answering.types import Conversation, Route
    from storage.writer import TurnLog

    answerer = Answerer(bench_settings(db=path))
    kb = answerer.kb
    rng = random.Random(seed)
    mix = query_mix(max(n, 100), seed=seed)
    gaps = unanswered_questions(n, seed=seed)
    entries = list(kb.entries)
    log = TurnLog(path, secret=SECRET, flush_interval=0.01, batch_max=500)
    await log.start()
    routes: dict[str, int] = {}
    try:
        for i in range(n):
            q = gaps[i] if rng.random() < 0.3 else mix[i]
            reply = answerer.match(q)
            reply.latency_ms = rng.lognormvariate(0.0, 0.6) * (900.0 if reply.route is Route.LLM else 2.0)
            reply.knowledge_version = kb.version
            if reply.route in (Route.CLARIFY, Route.NONE) and reply.question and rng.random() < 0.3:
                # What the LLM fallback logs: context entries, the model, its raw output and the guard's verdict.
                ctx = rng.sample(entries, 3)
                reply.route = Route.LLM
                reply.context_ids = [e.id for e in ctx]
                reply.model = "gpt-4o-mini"
                reply.llm_raw = ctx[0].answer[:200]
                reply.guard = "pass" if rng.random() < 0.9 else "fail: ungrounded number 3000"
                reply.text = reply.llm_raw if reply.guard == "pass" else "抱歉，这个问题我暂时无法回答。"
                reply.latency_ms = rng.lognormvariate(0.0, 0.4) * 900.0
            if i % 5 == 0:
                user = 10_000 + rng.randrange(2000)
                conv = Conversation("telegram", str(user), "private", user_id=str(user))
            elif i % 5 == 1:
                conv = Conversation(
                    "matrix",
                    f"!room{rng.randrange(50)}:example.org",
                    "group",
                    user_id=f"@u{rng.randrange(2000)}:example.org",
                )
            else:
                user = 20_000 + rng.randrange(2000)
                conv = Conversation("telegram", str(user), "private", user_id=str(user))
            log.record_turn(conv, reply)
            routes[reply.route.value] = routes.get(reply.route.value, 0) + 1
            x = rng.random()
            if reply.route is Route.CLARIFY and x < 0.2:
                log.record_feedback(reply.turn_id, "none")
            elif x < 0.08:
                log.record_feedback(reply.turn_id, "up")
            elif x < 0.11:
                log.record_feedback(reply.turn_id, "down")
            if i % 500 == 499:
                await log.flush()
        await log.flush()
    finally:
        await log.close()
    assert log.dropped == 0, log.dropped
    return routes


def build_base(path: Path, n: int, *, seed: int = 5) -> dict:
    """Write ``n`` turns with the real writer; returns the count by route."""
    return asyncio.run(_write_base(Path(path), n, seed))


def multiply(base: Path, dest: Path, total: int, *, days: int = 180, users: int = 50_000, progress=None) -> dict:
    """Fill ``dest`` (created with the current schema) with ``total`` turns copied from ``base`` over ``days``."""
    from storage.db import open_db_sync

    conn = open_db_sync(dest, readonly=False)
    conn.execute("ATTACH DATABASE ? AS base", (str(base),))
    t0 = time.perf_counter()
    nbase = conn.execute("SELECT count(*) FROM base.turns").fetchone()[0]
    conn.execute(
        "CREATE TEMP TABLE base_idx AS SELECT rowid AS r, row_number() OVER (ORDER BY rowid) - 1 AS idx FROM base.turns"
    )
    conn.execute("CREATE UNIQUE INDEX temp.base_idx_r ON base_idx(r)")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) "
        "INSERT INTO conversations (key, channel, chat_id, chat_type, user_hash, started) "
        "SELECT lower(hex(randomblob(32))), CASE WHEN i % 5 = 1 THEN 'matrix' ELSE 'telegram' END, "
        "lower(hex(randomblob(32))), CASE WHEN i % 5 = 1 THEN 'group' ELSE 'private' END, "
        "lower(hex(randomblob(32))), '2020-01-01T00:00:00.000Z' FROM n",
        (users,),
    )
    conv_lo = conn.execute("SELECT min(id) FROM conversations").fetchone()[0]
    conn.execute("INSERT INTO knowledge_versions SELECT * FROM base.knowledge_versions")
    conn.execute("COMMIT")
    end_ms = int(time.time() * 1000) - 60_000
    span_ms = days * 86_400_000
    start_ms = end_ms - span_ms
    copies = max(1, -(-total // nbase))
    slice_ms = span_ms / copies
    written = 0
    cols = [r[1] for r in conn.execute("PRAGMA base.table_info(turns)")]
    for k in range(copies):
        take = min(nbase, total - written)
        if take <= 0:
            break
        # ms of row idx in copy k: spread evenly over the copy's time slice.
        ms_expr = f"CAST({start_ms} + {k} * {slice_ms!r} + i.idx * {slice_ms / nbase!r} AS INTEGER)"
        ts_expr = f"strftime('%Y-%m-%dT%H:%M:%f', ({ms_expr}) / 1000.0, 'unixepoch') || 'Z'"
        serial = f"({k} * {nbase} + i.idx)"
        values = {
            "id": f"printf('%012x%08x', {ms_expr}, {serial})",
            "conversation_id": f"{conv_lo} + ({serial} * 7919 + {k} * 13) % {users}",
            "ts": ts_expr,
            # whole milliseconds, as the writer stores them
            "latency_ms": f"round(b.latency_ms * (0.6 + (({serial} * 37) % 100) / 125.0))",
        }
        select = ", ".join(values.get(c, f"b.{c}") for c in cols)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"INSERT INTO turns ({', '.join(cols)}) SELECT {select} FROM base.turns b JOIN base_idx i ON i.r = b.rowid "
            f"WHERE i.idx < {take} ORDER BY i.idx"
        )
        conn.execute(
            f"INSERT INTO feedback (turn_id, kind, ts) SELECT printf('%012x%08x', {ms_expr}, {serial}), f.kind, "
            f"strftime('%Y-%m-%dT%H:%M:%f', ({ms_expr} + 20000) / 1000.0, 'unixepoch') || 'Z' "
            f"FROM base.feedback f JOIN base.turns b ON b.id = f.turn_id JOIN base_idx i ON i.r = b.rowid "
            f"WHERE i.idx < {take} ORDER BY i.idx, f.id"
        )
        conn.execute("COMMIT")
        written += take
        if progress:
            progress(written, total, time.perf_counter() - t0)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("DETACH DATABASE base")
    conn.close()
    return {"turns": written, "base_turns": nbase, "copies": copies, "seconds": time.perf_counter() - t0}
