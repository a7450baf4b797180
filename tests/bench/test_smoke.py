"""Smoke test of the benchmarks (`make bench`): every benchmark function runs with tiny sizes and returns sane
figures, and the runner can format them. No timing assertions: speed is measured by `make bench`, not here.

The benchmark runs themselves carry the ``load`` marker (system-level runs, left out of the quick loop); the parts
that need no run (query mix, synthetic knowledge, importtime parsing, the Markdown) do not."""

from __future__ import annotations

import math

import pytest

from tests.bench import latency, llm, memory, run, startup, telegram


def _sane_ms(summary: dict, n: int | None = None) -> None:
    if n is not None:
        assert summary["n"] == n
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert math.isfinite(summary["mean_ms"])


def _formats(key: str, figures: dict) -> None:
    text, heads = run.FORMATTERS[key](figures)
    assert text.strip() and heads
    assert all(len(h) == 4 for h in heads)


def test_query_mix_is_varied_and_deterministic():
    from tests.bench.queries import query_mix

    a, b = query_mix(300), query_mix(300)
    assert a == b and len(a) == 300
    assert len(set(a)) > 100
    assert any(len(q) > 500 for q in a)  # the long paste


@pytest.mark.load  # a benchmark run (child processes, timed loops), as `make bench` does it at small sizes
def test_latency_on_shipped_and_generated_knowledge(tmp_path):
    out = latency.answer_latency(sizes=(0, 60), n=40, workdir=tmp_path)
    shipped, generated = out["runs"]
    assert shipped["entries"] == 14 and generated["entries"] == 60
    for r in out["runs"]:
        _sane_ms(r["match"], 40)
        _sane_ms(r["answer"], 40)
        assert sum(r["routes"].values()) == 40
    assert generated["phrases"] > shipped["phrases"]
    _formats("latency", out)


def test_synthetic_knowledge_loads_with_the_real_loader(tmp_path):
    from knowledge.loader import load_knowledge
    from tests.bench.synth import generate_knowledge

    kb_dir, probes = generate_knowledge(tmp_path / "kb", 40)
    kb = load_knowledge(kb_dir)
    assert len(kb.entries) == 40
    assert len({e.question for e in kb.entries}) == 40
    assert probes and all(isinstance(p, str) and p for p in probes)


@pytest.mark.load  # a benchmark run (child processes, timed loops), as `make bench` does it at small sizes
def test_logging_overhead_and_writer(tmp_path):
    out = latency.logging_overhead(n=40, block=20, workdir=tmp_path)
    _sane_ms(out["off"], 40)
    _sane_ms(out["on"], 40)
    assert out["turns_logged"] == 40
    assert out["writer_pragmas"] == {"journal_mode": "wal", "synchronous": "FULL"}
    assert out["ratio_p50"] > 0
    _formats("logging", out)

    w = latency.writer_throughput(n=150, workdir=tmp_path)
    assert w["committed"] == w["rows_in_db"] == 150
    assert w["rows_per_s"] > 0 and w["transactions"] >= 1
    _formats("writer", w)


@pytest.mark.load  # a benchmark run (child processes, timed loops), as `make bench` does it at small sizes
def test_ask_vs_imports_runs_the_real_cli():
    out = startup.ask_vs_imports(1, baseline="import rapidfuzz", warmup=False, profile=False)
    assert out["ask_median_s"] > 0 and out["baseline_median_s"] > 0
    assert out["ratio"] > 0
    _formats("ask", out)


def test_import_profile_parses_importtime(tmp_path):
    from tests.bench.common import clean_env

    rows = startup.import_profile(["-c", "import json"], clean_env(), tmp_path)
    assert any(r["module"] == "json" for r in rows)


@pytest.mark.load  # a benchmark run (child processes, timed loops), as `make bench` does it at small sizes
def test_llm_overhead():
    out = llm.llm_overhead(n=8)
    if "skipped" in out:
        pytest.skip(out["skipped"])
    d, e = out["direct"], out["end_to_end"]
    assert d["questions"] > 0
    _sane_ms(d["total"])
    assert d["verdicts"].get("guard pass", 0) > 0  # the synthetic grounded answer passes the real guard
    assert e["with_model_call"] > 0
    _sane_ms(e["total"])
    assert e["server"]["p50_ms"] < e["total"]["p50_ms"]
    _formats("llm", out)


@pytest.mark.load  # a benchmark run (child processes, timed loops), as `make bench` does it at small sizes
def test_core_memory_child():
    out = memory.core_memory(n=40)
    assert out["idle_rss_mb"] > out["interpreter_rss_mb"] > 0
    assert [c["questions"] for c in out["checkpoints"]] == [20, 40, 80, 120]
    assert out["turns_logged"] == 122
    _formats("memory", out)


@pytest.mark.load
def test_telegram_faqbot_run_against_fake_bot_api():
    out = telegram.telegram_bench(n=6, rounds=1, steady=10, burst_users=2, bots=("faqbot",), settle=0.1)
    if "skipped" in out:
        pytest.skip(out["skipped"])
    [f] = out["faqbot"]["runs"]
    assert f["exit_code"] == 0
    assert f["load"]["messages"] == 6 and f["load"]["messages_per_s"] > 0
    assert f["steady"]["messages"] == 4 and f["steady"]["rss_mb"][-1][0] == 10
    assert f["sent_total"] == f["expected"] == 1 + 6 + 4 + 8
    assert f["extra_sends"] == 0 and f["failed_sends"] == 0
    assert f["start_to_first_answer_s"] > 0 and f["idle_rss_mb"] > 0
    assert f["turns_logged"] == 1 + 6 + 4 + (8 - f["burst"]["notices"])
    _formats("telegram", out)


def test_render_writes_markdown(tmp_path):
    from tests.bench.common import machine

    env = machine() | {"tmp_fs": "ext4 (/tmp)"}
    out = latency.writer_throughput(n=20, workdir=tmp_path)
    text, heads = run.FORMATTERS["writer"](out)
    md = run.render(
        [
            {
                "key": "writer",
                "title": "Log writer",
                "func": "tests.bench.latency:writer_throughput",
                "kwargs": {"n": 20},
                "text": text,
                "heads": heads,
                "seconds": 0.1,
                "load_before": (),
                "load_after": (),
            }
        ],
        env,
        [".venv/bin/python", "-m", "tests.bench.run"],
    )
    assert md.startswith("# Benchmarks") and "## Targets" in md and "rows/s" in md
    assert env["cpu"] in md and "-m tests.bench.run --only writer" in md
