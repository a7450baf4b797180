"""`make bench`: run every benchmark, print progress, write BENCHMARKS.md.

    .venv/bin/python -m tests.bench.run                      # everything (a few minutes on 2 cores)
    .venv/bin/python -m tests.bench.run --only latency,ask   # some sections (BENCHMARKS.md then holds only those)
    .venv/bin/python -m tests.bench.run --quick --out /tmp/b.md   # small sizes, for trying changes

Each section records the function and arguments that produced it; the file's header records the command line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.common import REPO, machine


@dataclass
class Bench:
    key: str
    title: str
    func: str  # "module:function"
    full: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)

    def call(self, quick: bool) -> tuple[dict, dict]:
        import importlib

        mod, name = self.func.split(":")
        kwargs = self.quick if quick else self.full
        return getattr(importlib.import_module(mod), name)(**kwargs), kwargs


BENCHES = [
    Bench(
        "latency",
        "In-process answer latency and knowledge-base size",
        "tests.bench.latency:answer_latency",
        {"sizes": (0, 1000, 10000), "n": 2000},
        {"sizes": (0, 300), "n": 300},
    ),
    Bench(
        "logging",
        "Answer latency with the SQLite log on vs off",
        "tests.bench.latency:logging_overhead",
        {"n": 3000},
        {"n": 300},
    ),
    Bench("writer", "Log writer throughput", "tests.bench.latency:writer_throughput", {"n": 20000}, {"n": 1000}),
    Bench(
        "ask",
        "`faqbot ask` one-shot wall time vs importing the chat stack",
        "tests.bench.startup:ask_vs_imports",
        {"n": 3},
        {"n": 2},
    ),
    Bench(
        "llm", "LLM route: pipeline overhead outside the model", "tests.bench.llm:llm_overhead", {"n": 300}, {"n": 40}
    ),
    Bench(
        "memory", "Resident memory of the answering core", "tests.bench.memory:core_memory", {"n": 10000}, {"n": 500}
    ),
    Bench(
        "telegram",
        "Telegram end to end: `faqbot run` vs a bare aiogram echo bot",
        "tests.bench.telegram:telegram_bench",
        {"n": 3000, "rounds": 3, "steady": 10000, "burst_users": 200},
        {"n": 200, "rounds": 1, "steady": 600, "burst_users": 20},
    ),
    Bench(
        "logscale",
        "The log at a year of traffic: review commands on a large log",
        "tests.bench.logscale:log_at_scale",
        {"sizes": (100_000, 1_000_000), "n_base": 20_000},
        {"sizes": (20_000,), "n_base": 5_000},
    ),
]


# ---------------------------------------------------------------------------------------------- formatting
def ms(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _args(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def fmt_latency(r: dict) -> tuple[str, list]:
    rows = []
    for run in r["runs"]:
        rows.append(
            [
                run["label"],
                f"{run['entries']:,}",
                f"{run['phrases']:,}",
                ms(run["match"]["p50_ms"]),
                ms(run["match"]["p99_ms"]),
                ms(run["answer"]["p50_ms"]),
                ms(run["answer"]["p99_ms"]),
                f"{ms(run['answer_cpu']['p50_ms'])} / {ms(run['answer_cpu']['p99_ms'])}",
                f"{run['load_s']:.2f} + {run['index_s']:.2f}",
            ]
        )
    text = table(
        [
            "knowledge base",
            "entries",
            "phrases",
            "match p50 ms",
            "match p99 ms",
            "answer p50 ms",
            "answer p99 ms",
            "answer CPU p50 / p99 ms",
            "load + index s",
        ],
        rows,
    )
    routes = "; ".join(
        f"{run['label']}: " + ", ".join(f"{k} {v}" for k, v in sorted(run["routes"].items())) for run in r["runs"]
    )
    text += (
        f"\n\n{r['runs'][0]['questions']:,} questions per knowledge base (own paraphrases, noisy variants, "
        "out-of-scope look-alikes, injection, personal data, Traditional script, odd input, one 600-character "
        "paste per 100; for generated bases 40% aimed at generated entries), after 200 warm-up questions and, "
        "as `faqbot run` does after start-up, `gc.freeze()` (the knowledge index is not re-scanned by "
        "every full garbage collection). "
        "`match` = `Answerer.match` (sync); `answer` = `await Answerer.answer` (no LLM, no log). CPU = "
        "thread CPU time of the same calls (what the code costs, without time the OS gave other processes). "
        f"Routes: {routes}."
    )
    for run in r["runs"]:
        kinds = ", ".join(f"{k} {v}" for k, v in run["slowest_1pct_kinds"].items())
        per_kind = ", ".join(f"{k} {ms(v)}" for k, v in run["answer_cpu_p50_by_kind"].items())
        text += (
            f"\n\n*{run['label']}*: the slowest 1% of answers (by CPU time) are {kinds}; answer p99 without "
            f"the long pastes {ms(run['answer_p99_without_long_ms'])} ms; answer CPU p50 by kind (ms): "
            f"{per_kind}."
        )
    heads = []
    for run in r["runs"]:
        p99 = run["answer"]["p99_ms"]
        if run["entries"] < 100:
            heads.append(["answer p99, shipped FAQ", "< 2 ms", f"{ms(p99)} ms", verdict(p99 < 2.0)])
        elif run["entries"] >= 10000:
            heads.append(["answer p99, 10,000 entries", "< 5 ms", f"{ms(p99)} ms", verdict(p99 < 5.0)])
    return text, heads


def fmt_logging(r: dict) -> tuple[str, list]:
    rows = [
        [
            "log off",
            ms(r["off"]["p50_ms"]),
            ms(r["off"]["p99_ms"]),
            ms(r["off"]["mean_ms"]),
            ms(r["off_cpu"]["p50_ms"]),
        ],
        [
            "log on (TurnLog, WAL, synchronous=FULL)",
            ms(r["on"]["p50_ms"]),
            ms(r["on"]["p99_ms"]),
            ms(r["on"]["mean_ms"]),
            ms(r["on_cpu"]["p50_ms"]),
        ],
        [
            "ratio on / off",
            f"{r['ratio_p50']:.3f}",
            f"{r['ratio_p99']:.3f}",
            f"{r['ratio_mean']:.3f}",
            f"{r['cpu_ratio_p50']:.3f}",
        ],
        [
            "diagnosis: `record_turn` only (TurnLog not started: no writer thread)",
            ms(r["queued_only"]["p50_ms"]),
            ms(r["queued_only"]["p99_ms"]),
            ms(r["queued_only"]["mean_ms"]),
            "",
        ],
        ["ratio `record_turn` only / off", f"{r['ratio_p50_queued_only']:.3f}", "", "", ""],
    ]
    text = table(["", "p50 ms", "p99 ms", "mean ms", "CPU p50 ms"], rows)
    text += (
        f"\n\n{r['questions_per_side']:,} questions per side, interleaved in blocks of 100 (rotating which "
        "side goes first), `await asyncio.sleep(0)` after each answer so the writer task runs as it would "
        f"between chat messages. Writer connection: {r['writer_pragmas']}. Turns logged "
        f"{r['turns_logged']:,} (+ warm-up), rows in the file {r['rows_in_db']:,}, in {r['transactions']} "
        f"transactions; final flush {r['final_flush_s'] * 1000:.0f} ms."
    )
    return text, [
        ["answer latency, log on / off (p50)", "≤ 1.1", f"{r['ratio_p50']:.3f}", verdict(r["ratio_p50"] <= 1.1)]
    ]


def fmt_writer(r: dict) -> tuple[str, list]:
    text = table(
        [
            "rows",
            "seconds",
            "rows/s",
            "transactions",
            "record_turn µs/row",
            "committed",
            "rows in file",
            "writer pragmas",
        ],
        [
            [
                f"{r['rows']:,}",
                f"{r['seconds']:.2f}",
                f"{r['rows_per_s']:,.0f}",
                r["transactions"],
                f"{r['record_us_per_row']:.0f}",
                f"{r['committed']:,}",
                f"{r['rows_in_db']:,}",
                r["writer_pragmas"],
            ]
        ],
    )
    text += (
        "\n\nAll rows recorded at once, then `flush()`: time from the first `record_turn` to the commit of the "
        f"last row. Batches of up to {r['batch_max']} rows per `BEGIN IMMEDIATE` transaction, FTS5 trigram "
        "index maintained by triggers. `record_turn` only queues a snapshot; preparing the rows (masking, HMAC "
        "of ids, JSON) runs on a worker thread, one call per batch; the transaction goes through aiosqlite, one "
        "multi-row INSERT per table."
    )
    return text, [["log writer rows/s (batched, FULL)", "(figure)", f"{r['rows_per_s']:,.0f}", "–"]]


def fmt_ask(r: dict) -> tuple[str, list]:
    text = table(
        ["command", "median s", "min s", "max s"],
        [
            [f"`{r['ask_command']}`", f"{r['ask_median_s']:.3f}", f"{r['ask_min_s']:.3f}", f"{r['ask_max_s']:.3f}"],
            [
                f"`{r['baseline_command']}`",
                f"{r['baseline_median_s']:.3f}",
                f"{r['baseline_min_s']:.3f}",
                f"{r['baseline_max_s']:.3f}",
            ],
            ["ratio (medians)", f"{r['ratio']:.3f}", "", ""],
        ],
    )
    imports = ", ".join(f"{i['module']} {i['cumulative_ms']:.0f}" for i in r["ask_imports"][:8])
    text += (
        f"\n\n{r['runs']} runs of each, alternating, after one unmeasured run of each; fresh processes, "
        "no `.env`, no LLM/Telegram settings. Heavy packages `ask` loads: "
        f"{', '.join(r['ask_loads']) or 'none'} (not aiogram, openai, aiosqlite, aiohttp). Largest top-level "
        f"imports of `ask` (`python -X importtime -m bot ask …`, cumulative ms): {imports}."
    )
    return text, [
        [
            "`faqbot ask` / import of aiogram+openai+aiosqlite+rapidfuzz",
            "≤ 0.5",
            f"{r['ratio']:.3f}",
            verdict(r["ratio"] <= 0.5),
        ]
    ]


def fmt_llm(r: dict) -> tuple[str, list]:
    if "skipped" in r:
        return f"Skipped: {r['skipped']}.", [["LLM pipeline overhead p99", "< 5 ms", "skipped", "–"]]
    d, e = r["direct"], r["end_to_end"]
    text = "Parts timed directly (in-process, no I/O):\n\n" + table(
        ["part", "p50 ms", "p99 ms", "max ms"],
        [
            [
                "retrieval (`LLMFallback.context_entries`)",
                ms(d["retrieval"]["p50_ms"]),
                ms(d["retrieval"]["p99_ms"]),
                ms(d["retrieval"]["max_ms"]),
            ],
            [
                "retrieval + prompt assembly (`LLMFallback.prepare`)",
                ms(d["retrieval_and_prompt"]["p50_ms"]),
                ms(d["retrieval_and_prompt"]["p99_ms"]),
                ms(d["retrieval_and_prompt"]["max_ms"]),
            ],
            [
                "draft filter + guard (`DraftFilter`, `guard.check`)",
                ms(d["drafts_and_guard"]["p50_ms"]),
                ms(d["drafts_and_guard"]["p99_ms"]),
                ms(d["drafts_and_guard"]["max_ms"]),
            ],
            [
                "**`prepare` + draft filter + guard, per question**",
                ms(d["total"]["p50_ms"]),
                ms(d["total"]["p99_ms"]),
                ms(d["total"]["max_ms"]),
            ],
            [
                "the same, CPU time of the thread",
                ms(d["total_cpu"]["p50_ms"]),
                ms(d["total_cpu"]["p99_ms"]),
                ms(d["total_cpu"]["max_ms"]),
            ],
        ],
    )
    text += (
        f"\n\n{d['questions']} questions of the mix that the core sends to the LLM (clarify/none), half with a "
        f"conversation history; top-k {d['top_k']}; synthetic grounded answer (first sentence of the top entry "
        f"+ citation) fed to the draft filter in 8-character pieces; verdicts: {d['verdicts']}.\n\n"
        "End to end against `tests.fakes.openai_server.FakeOpenAI` answering at once (streamed, grounded):\n\n"
    )
    text += table(
        ["", "p50 ms", "p99 ms"],
        [
            ["`await Answerer.answer()` on the LLM route", ms(e["total"]["p50_ms"]), ms(e["total"]["p99_ms"])],
            ["time inside the server's handler", ms(e["server"]["p50_ms"]), ms(e["server"]["p99_ms"])],
            ["answer minus server time", ms(e["outside_model"]["p50_ms"]), ms(e["outside_model"]["p99_ms"])],
            [
                "bare `openai.AsyncOpenAI` stream of the same prompts",
                ms(e["bare_client_total"]["p50_ms"]),
                ms(e["bare_client_total"]["p99_ms"]),
            ],
        ],
    )
    text += (
        f"\n\n{e['with_model_call']} of {e['questions']} questions reached the model; outcomes: {e['outcomes']}. "
        "The server runs in the same process and event loop, so its HTTP parsing is inside the "
        '"minus server" figure; the bare-client row is the floor any pipeline using the openai client '
        "pays on this harness."
    )
    p99 = d["total"]["p99_ms"]
    rows = [["LLM route overhead (retrieval + prompt + guard) p99", "< 5 ms", f"{ms(p99)} ms", verdict(p99 < 5.0)]]
    m = r.get("modes")
    if m:
        q, g = m["quote"], m["guard_on_labelled"]
        qc, gc_ = m["quote_cpu"], m["guard_on_labelled_cpu"]
        text += "\n\nThe two modes (`FAQBOT_LLM_MODE`), outside the model, in-process:\n\n" + table(
            ["", "p50 ms", "p99 ms", "max ms", "CPU p50 ms", "CPU p99 ms"],
            [
                [
                    "quote: retrieval + numbered prompt + strict parse + compose, per question",
                    ms(q["p50_ms"]),
                    ms(q["p99_ms"]),
                    ms(q["max_ms"]),
                    ms(qc["p50_ms"]),
                    ms(qc["p99_ms"]),
                ],
                [
                    f"generate: guard with the claim checks, on the {m['labelled_answers']} labelled model answers",
                    ms(g["p50_ms"]),
                    ms(g["p99_ms"]),
                    ms(g["max_ms"]),
                    ms(gc_["p50_ms"]),
                    ms(gc_["p99_ms"]),
                ],
            ],
        )
        text += (
            "\n\nCPU = the thread's CPU time (`time.thread_time`): what the pipeline itself costs, without the "
            "time the OS gave other processes on a shared machine."
        )
        pc = m["prompt_chars"]
        text += (
            f"\n\nWhat each mode sends and receives (characters, mean over {m['questions']} questions; "
            f"Chinese text is roughly one token per 1–1.5 characters): quote {pc['quote']:,} in (prompt with "
            f"numbered sentences + the JSON Schema) / ~{m['quote_output_chars']} out (the selection), one call; "
            f"generate {pc['generate']:,} in / ~{m['generate_output_chars']} out (the labelled answers), one "
            f"call, plus with `FAQBOT_LLM_VERIFY` a second call of ~{m['verify_prompt_chars']:,} in and a short "
            "JSON list out."
        )
        worst = max(q["p99_ms"], g["p99_ms"])
        rows.append(
            [
                "LLM quote mode / generate guard with claim checks, p99 (wall)",
                "< 5 ms",
                f"{ms(worst)} ms",
                verdict(worst < 5.0),
            ]
        )
        worst_cpu = max(qc["p99_ms"], gc_["p99_ms"])
        rows.append(
            [
                "LLM quote mode / generate guard with claim checks, p99 (CPU)",
                "< 5 ms",
                f"{ms(worst_cpu)} ms",
                verdict(worst_cpu < 5.0),
            ]
        )
    return text, rows


def fmt_memory(r: dict) -> tuple[str, list]:
    rows = [
        ["interpreter only", f"{r['interpreter_rss_mb']:.1f}"],
        ["idle: core + log started, one question answered", f"{r['idle_rss_mb']:.1f}"],
        ["after the first Traditional-script question (OpenCC s2tw loaded)", f"{r['after_traditional_rss_mb']:.1f}"],
    ]
    rows += [[f"after {c['questions']:,} questions", f"{c['rss_mb']:.1f}"] for c in r["checkpoints"]]
    text = table(["state", "RSS MB"], rows)
    text += (
        f"\n\nOne process: `build_services` with the SQLite log on, no LLM; {r['users']:,} simulated users, "
        f"each with its own `Conversation`; {r['turns_logged']:,} turns logged. Growth n→2n "
        f"{r['growth_n_to_2n_mb']:+.1f} MB, 2n→3n {r['growth_2n_to_3n_mb']:+.1f} MB (n = {r['n']:,})."
    )
    # A leak grows by the same amount every step; caches that fill up grow by less and less.
    settled = r["growth_2n_to_3n_mb"] <= max(2.0, 0.6 * r["growth_n_to_2n_mb"])
    text += (
        " Verdict rule: met when the step 2n→3n is at most 2 MB or at most 0.6× the step n→2n (a leak grows "
        "by the same amount every step; caches that fill up by less and less)."
    )
    return text, [
        [
            f"core RSS idle → after {r['n']:,} questions",
            "bounded",
            f"{r['idle_rss_mb']:.0f} → {r['rss_after_n_mb']:.0f} MB (n→2n "
            f"{r['growth_n_to_2n_mb']:+.1f}, 2n→3n {r['growth_2n_to_3n_mb']:+.1f} MB)",
            "met" if settled else "**still growing**",
        ]
    ]


def fmt_telegram(r: dict) -> tuple[str, list]:
    if "skipped" in r:
        return f"Skipped: {r['skipped']}.", [["Telegram messages/s ratio", "≥ 0.5", "skipped", "–"]]
    e, f = r.get("echo"), r.get("faqbot")
    rows = []
    for label, agg in (("bare aiogram echo bot", e), ("`faqbot run` (log on, no LLM)", f)):
        if agg is None:
            continue
        for i, x in enumerate(agg["runs"]):
            ld = x["load"]
            rows.append(
                [
                    label,
                    i + 1,
                    f"`{x['command']}`",
                    f"{x['start_to_first_answer_s']:.2f}",
                    f"{ld['messages']:,}",
                    f"{ld['messages_per_s']:,.0f}",
                    f"{ld['bot_cpu_ms_per_message']:.2f}",
                    f"{ld['bot_cpu_share']:.0%}",
                    f"{ld['harness_cpu_share']:.0%}",
                    f"{x['idle_rss_mb']:.0f}",
                    f"{x['rss_after_mb']:.0f}",
                    x["exit_code"],
                ]
            )
    text = table(
        [
            "bot",
            "round",
            "command",
            "start → first answer s",
            "backlog",
            "messages/s",
            "bot CPU ms/msg",
            "bot CPU busy",
            "fake CPU busy",
            "RSS idle MB",
            "RSS after backlog MB",
            "SIGTERM → exit",
        ],
        rows,
    )
    ratio = r.get("ratio_messages_per_s")
    text += "\n\n"
    if ratio is not None:
        text += (
            f"Ratio faqbot / echo (medians over {r['rounds']} rounds): **{ratio:.2f}** "
            f"({f['messages_per_s']:,.0f} / {e['messages_per_s']:,.0f} messages/s). "
        )
    text += "Start → first answer is mostly importing aiogram (the bare echo bot takes about as long). "
    text += (
        f"Each round: a fresh process started with one question waiting, then a backlog of {r['backlog']:,} "
        "messages pushed into the fake at once, one per user; real aiogram long polling; the fake Bot API runs in "
        "the benchmark process."
    )
    for label, agg in (("echo", e), ("faqbot", f)):
        if agg is not None:
            calls = agg["runs"][-1]["load"].get("api_calls", {})
            text += (
                f" Bot API calls during the last {label} backlog: "
                + ", ".join(f"{m} {c:,}" for m, c in sorted(calls.items(), key=lambda kv: -kv[1]))
                + "."
            )
    if f is not None:
        last = f["runs"][-1]
        st = last.get("steady")
        if st:
            curve = ", ".join(f"{k:,}: {v:.0f}" for k, v in st["rss_mb"])
            text += (
                f"\n\nThe last faqbot run then took steady traffic ({st['messages']:,} more messages in waves of "
                f"{st['wave']}, each pushed when the previous one was answered): {st['messages_per_s']:,.0f} "
                f"messages/s, {st['bot_cpu_ms_per_message']:.2f} ms CPU per message; RSS MB after n messages in "
                f"all: {curve}."
            )
        b = last.get("burst")
        if b:
            text += (
                f"\n\nBurst: {b['users']} users sending 4 messages each at once: {b['notices']} of "
                f'{b["messages"]} got a "busy"/throttle notice (`texts.BUSY_LLM` / `texts.THROTTLED`) '
                "instead of an answer."
            )
        text += (
            "\n\nDelivery check (faqbot): "
            + "; ".join(
                f"round {i + 1}: {x['sent_total']:,} messages sent for {x['expected']:,} expected, extra "
                f"{x['extra_sends']}, failed {x['failed_sends']}, {x['turns_logged']:,} turns in the log, "
                f"stopped in {x['stop_s']:.2f} s"
                for i, x in enumerate(f["runs"])
            )
            + "."
        )
    heads = []
    if ratio is not None:
        heads.append(["Telegram messages/s, faqbot / echo (backlog)", "≥ 0.5", f"{ratio:.2f}", verdict(ratio >= 0.5)])
    if f is not None:
        heads.append(
            ["`faqbot run` start → first answer (median)", "(figure)", f"{f['start_to_first_answer_s']:.2f} s", "–"]
        )
        last = f["runs"][-1]
        st = last.get("steady")
        if st:
            total, rss = st["rss_mb"][-1]
            heads.append(
                [
                    "`faqbot run` RSS idle → after messages",
                    "bounded",
                    f"{last['idle_rss_mb']:.0f} → {rss:.0f} MB after {total:,}",
                    "–",
                ]
            )
    return text, heads


def fmt_logscale(r: dict) -> tuple[str, list]:
    targets = {
        "stats (all time)": 2,
        "stats --since 30d": 2,
        "list (first page)": 1,
        "show ID": 1,
        "search 社保卡": 1,
        "search (no hit)": 1,
        "gaps (default --since 30d)": 5,
        "replay --since 30d": 60,
        "purge --older-than 90d": 30,
        "purge --older-than 90d, one core busy": 30,
    }
    text = ""
    heads = []
    for run in r["runs"]:
        n = run["turns"]
        base = run["baseline"]
        rows = [
            [
                "baseline: `SELECT count(*) FROM turns` in a fresh process",
                f"{base['seconds']:.2f}",
                "1.00",
                f"{base['rss_mb']:.0f}",
                "",
                "",
            ]
        ]
        for label, c in run["commands"].items():
            lag = c.get("writer_lag_p99_s")
            note = (
                f"stopped after {c['seconds']:.0f} s (streaming; RSS up to then)"
                if c.get("stopped")
                else ("" if c["exit"] == 0 else f"exit {c['exit']}")
            )
            pr = c.get("result") or {}
            if pr.get("deleted") is not None:
                note = _purge_note(pr)
            rows.append(
                [
                    f"`faqbot logs {label}`",
                    f"{c['seconds']:.2f}",
                    f"{c['ratio']:.1f}",
                    f"{c['rss_mb']:.0f}",
                    "" if lag is None else f"{lag * 1000:.0f}",
                    note,
                ]
            )
        ds = run.get("datasette", {})
        for key, v in ds.items():
            if isinstance(v, dict):
                shown = f"facets shown: {', '.join(v['facets'])}" if v.get("facets") else ""
                note = "; ".join(
                    x
                    for x in (
                        shown,
                        "a facet timed out" if v.get("facet_timed_out") else "",
                        f"“{v['heading']}”" if v.get("heading") else "",
                    )
                    if x
                )
                rows.append([f"Datasette {key} page", f"{v['seconds']:.2f}", "", "", "", note])
                if key in ("table", "facets", "search", "search (rare phrase)"):
                    ok = v["seconds"] <= 1 and not v.get("facet_timed_out") and (key == "search" or v.get("facets"))
                    heads.append(
                        [
                            f"{n:,} turns: Datasette {key} page" + (" (facets shown)" if v.get("facets") else ""),
                            "≤ 1 s",
                            f"{v['seconds']:.2f} s" + (", a facet timed out" if v.get("facet_timed_out") else ""),
                            verdict(ok),
                        ]
                    )
        text += (
            f"**{n:,} turns** ({run['bytes_per_turn']:.0f} bytes a turn, {run['bytes'] / 2**20:.0f} MB; built in "
            f"{run['build']['seconds']:.0f} s from {r['n_base']:,} turns written by the real writer):\n\n"
        )
        text += table(["command", "seconds", "ratio to baseline", "peak RSS MB", "writer lag p99 ms", "note"], rows)
        text += "\n\n"
        for label, limit in targets.items():
            c = run["commands"].get(label)
            if c:
                heads.append(
                    [
                        f"{n:,} turns: `logs {label}`",
                        f"≤ {limit} s",
                        f"{c['seconds']:.2f} s",
                        verdict(c["seconds"] <= limit and c["exit"] == 0),
                    ]
                )
        for label in ("purge --older-than 90d", "purge --older-than 90d, one core busy"):
            pr = (run["commands"].get(label) or {}).get("result") or {}
            if pr.get("max_lock_ms") is not None:
                heads.append(
                    [
                        f"{n:,} turns: `logs {label}`, longest write lock",
                        "≤ 200 ms",
                        f"{pr['max_lock_ms']:.0f} ms",
                        verdict(pr["max_lock_ms"] <= 200),
                    ]
                )
            lag = (run["commands"].get(label) or {}).get("writer_lag_p99_s")
            if lag is not None:
                heads.append(
                    [
                        f"{n:,} turns: bot's writer during `logs {label}` (answer → committed p99)",
                        "< 1 s",
                        f"{lag * 1000:.0f} ms",
                        verdict(lag < 1),
                    ]
                )
        heads.append(
            [
                f"{n:,} turns: bytes a turn",
                "≤ 1,024",
                f"{run['bytes_per_turn']:.0f}",
                verdict(run["bytes_per_turn"] <= 1024),
            ]
        )
    text += (
        "Each command is a fresh `faqbot logs …` process; RSS is its peak (VmHWM from /proc, polled every 20 ms). "
        "Commands that print every turn are stopped after 120 s on logs over 200,000 turns. Writer lag: a `TurnLog` in the benchmark process logs a turn "
        "every 50 ms while the command runs; lag = `record_turn` → committed (`flush()`). Purge runs twice on "
        "the same turns: first on a copy while another process spins on one core (`python -c 'while True: "
        "pass'`), then on the log itself; its lock times are purge's own (`--json`): from BEGIN IMMEDIATE "
        "acquired to COMMIT done (an incremental-vacuum step also counts any wait for the lock). Datasette "
        "pages are timed cold (first request after start), one each; the turns pages include the default "
        "route and channel facets."
    )
    return text, heads


def _purge_note(pr: dict) -> str:
    sizes = pr.get("batch_sizes") or {}
    return (
        f"{pr['deleted']:,} turns in {pr['batches']} batches (mean {sizes.get('mean', 0):,}, "
        f"{sizes.get('min', 0):,}–{sizes.get('max', 0):,}); longest lock {pr['max_lock_ms']:.0f} ms (delete "
        f"{pr.get('max_delete_lock_ms', 0):.0f}, vacuum {pr.get('max_vacuum_lock_ms', 0):.0f}); deletes "
        f"{pr.get('delete_seconds', 0):.1f} s, vacuum {pr.get('vacuum_seconds', 0):.1f} s; of that, lock held "
        f"{pr.get('lock_seconds', 0):.1f} s, checkpoints {pr.get('checkpoint_seconds', 0):.1f} s, pauses for "
        f"the writer {pr.get('pause_seconds', 0):.1f} s"
    )


FORMATTERS: dict[str, Callable[[dict], tuple[str, list]]] = {
    "latency": fmt_latency,
    "logging": fmt_logging,
    "writer": fmt_writer,
    "ask": fmt_ask,
    "llm": fmt_llm,
    "memory": fmt_memory,
    "telegram": fmt_telegram,
    "logscale": fmt_logscale,
}


# ---------------------------------------------------------------------------------------------- running
def _load() -> tuple[float, ...]:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        return ()


def render(results: list[dict], env: dict, argv: list[str]) -> str:
    m = env
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{' '.join(argv)}` on {m['date']}, at commit {m['git']}. "
        "Do not edit by hand: run `make bench` (the same command without arguments) again.",
        "",
        f"**Machine:** {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['physical_cores']} cores), "
        f"{m['ram_gb']} GB RAM; {m['os']}; {m['python']}; SQLite {m['sqlite']}; temp files on {m['tmp_fs']}. "
        f"Packages: {pk}. Load average at start: {m['loadavg_at_start']} (other work on the machine shows up in "
        "wall-clock percentiles; the CPU-time columns do not include it).",
        "",
        "Each comparison runs both sides in the same run. Percentiles by linear interpolation over all samples; "
        "no sample is dropped.",
        "",
        "## Targets",
        "",
    ]
    heads = []
    for r in results:
        heads += r["heads"]
    lines += [table(["figure", "target", "measured", "verdict"], heads), ""]
    for r in results:
        lines += [
            f"## {r['title']}",
            "",
            f"Command: `{' '.join(argv[:1])} -m tests.bench.run --only {r['key']}` → "
            f"`{r['func'].replace(':', '.')}({_args(r['kwargs'])})`; took {r['seconds']:.0f} s, load "
            f"average {r['load_before']} → {r['load_after']}.",
            "",
        ]
        lines += [r["text"], ""]
    return "\n".join(lines).rstrip() + "\n"


def _tmp_fs() -> str:
    import tempfile

    import psutil

    tmp = Path(tempfile.gettempdir()).resolve()
    best = None
    for p in psutil.disk_partitions(all=True):
        if str(tmp).startswith(p.mountpoint) and (best is None or len(p.mountpoint) > len(best.mountpoint)):
            best = p
    return f"{best.fstype} ({tmp})" if best else str(tmp)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated sections: " + ",".join(b.key for b in BENCHES))
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds, for trying changes)")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="markdown file to write")
    ap.add_argument("--json", help="also write the raw figures as JSON here")
    args = ap.parse_args(argv)
    wanted = [b for b in BENCHES if not args.only or b.key in args.only.split(",")]
    unknown = set(args.only.split(",")) - {b.key for b in BENCHES} if args.only else set()
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")

    env = machine()
    env["tmp_fs"] = _tmp_fs()
    results = []
    failed = False
    for b in wanted:
        print(f"[bench] {b.key}: {b.title} ...", flush=True)
        before = _load()
        t0 = time.perf_counter()
        try:
            figures, kwargs = b.call(args.quick)
            text, heads = FORMATTERS[b.key](figures)
        except Exception:
            failed = True
            tb = traceback.format_exc()
            print(tb, file=sys.stderr)
            figures, kwargs = {"error": tb}, (b.quick if args.quick else b.full)
            text = "Failed:\n\n```\n" + tb[-3000:] + "```"
            heads = [[b.title, "", "failed", "**failed**"]]
        seconds = time.perf_counter() - t0
        print(f"[bench] {b.key}: done in {seconds:.0f} s", flush=True)
        for h in heads:
            print(f"        {h[0]}: {h[2]} (target {h[1]}) {h[3]}", flush=True)
        results.append(
            {
                "key": b.key,
                "title": b.title,
                "func": b.func,
                "kwargs": kwargs,
                "figures": figures,
                "text": text,
                "heads": heads,
                "seconds": seconds,
                "load_before": before,
                "load_after": _load(),
            }
        )
    shown_argv = [_rel(sys.executable), "-m", "tests.bench.run", *(argv if argv is not None else sys.argv[1:])]
    Path(args.out).write_text(render(results, env, shown_argv), encoding="utf-8")
    print(f"[bench] wrote {args.out}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": env, "results": results}, ensure_ascii=False, indent=1, default=str),
            encoding="utf-8",
        )
    return 1 if failed else 0


def _rel(path: str) -> str:
    try:
        return str(Path(path).relative_to(REPO))
    except ValueError:
        return path


if __name__ == "__main__":
    sys.exit(main())
