"""Pipeline overhead of the LLM fallback outside the model: retrieval + prompt assembly + draft filtering + guard.

    python -m tests.bench.llm_overhead [QUESTIONS.jsonl]     # prints JSON: p50/p99/max in ms over the questions

No network: each question gets a synthetic model answer (the first sentence of its top context entry with a
citation, streamed in 8-character pieces through the draft filter) and the full guard verdict.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def measure(questions: list[str], *, settings=None, kb=None, rounds: int = 3) -> dict:
    from bot.answering.answerer import Answerer
    from bot.answering.types import Conversation
    from bot.app.settings import Settings
    from bot.llm import guard
    from bot.llm.fallback import DraftFilter, LLMFallback
    from knowledge.loader import load_knowledge

    settings = settings or Settings(openai_base_url="http://127.0.0.1:9/v1", openai_api_key=None, llm_mode="generate")
    kb = kb or load_knowledge(settings.knowledge_dir)
    answerer = Answerer(settings, kb)
    llm = LLMFallback(settings, kb)
    conv = Conversation("bench", "bench")
    bases = [answerer.match(q) for q in questions]
    import gc

    gc.collect()
    samples: list[float] = []
    cpu: list[float] = []
    verdicts = {"pass": 0, "fail": 0, "no-context": 0}
    for _ in range(rounds):
        for base in bases:
            c0 = time.thread_time()
            t0 = time.perf_counter()
            prep = llm.prepare(base, conv)
            top = prep.entries[0] if prep.entries else None
            first = re.split(r"(?<=[。；])", top.answer.strip())[0] if top else ""
            answer = f"{first}[来源: {top.id}]" if top else ""
            drafts = DraftFilter(llm.leak, hold=max(len(llm.canary), guard.LEAK_CHARS))
            for i in range(0, len(answer), 8):
                drafts.feed(answer[i : i + 8])
            v = guard.check(
                answer,
                context={e.id: e for e in prep.entries},
                refusal=llm.prompts.refusal,
                leak=llm.leak,
                threshold=llm.guard_threshold,
            )
            samples.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
            verdicts["no-context" if top is None else "pass" if v.ok else "fail"] += 1
    return {
        "questions": len(questions),
        "rounds": rounds,
        "n": len(samples),
        "p50_ms": round(_percentile(samples, 50), 3),
        "p99_ms": round(_percentile(samples, 99), 3),
        "max_ms": round(max(samples), 3) if samples else None,
        "cpu_p50_ms": round(_percentile(cpu, 50), 3),
        "cpu_p99_ms": round(_percentile(cpu, 99), 3),
        "verdicts": verdicts,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = (
        Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "tests" / "data" / "labelled_questions.jsonl"
    )
    questions = [json.loads(line)["q"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(json.dumps(measure(questions), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
