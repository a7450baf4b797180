"""`faqbot eval-guard FILE`: how often each LLM mode shows a fabrication and withholds a faithful answer.

FILE is JSONL, one model answer per line (see tests/data/guard_answers.jsonl):
  id, label ("faithful" | "fabricated"), kind (style or kind of fabrication), question, context (entry ids sent),
  answer (what a model wrote in generate mode, with [来源: id] markers), and for faithful answers `select` (the
  labels a model would pick in quote mode), for fabrications `claim` (the unsupported claim, for the report).

generate mode: the answer goes through the guard exactly as the fallback runs it (`guard.check` with the leak
detector, the refusal and our boilerplate).
quote mode: a faithful answer's model output is its selection as JSON; a fabrication's model outputs are the ways a
model could try to get the claim shown — the prose itself, the claim as a label, the claim in an extra key. Each goes
through the strict parser and the composer the fallback uses; whatever would be shown must be curated text, line by
line. No model, no network.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from bot.answering import texts
from bot.llm import guard, quote
from knowledge.loader import KnowledgeBase
from knowledge.normalize import to_simplified
from prompts.loader import Prompts, render

LABELS = ("faithful", "fabricated")


class EvalFileError(ValueError):
    pass


def load(path: str | Path, kb: KnowledgeBase) -> list[dict]:
    items = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise EvalFileError(f"{path}:{n}: not JSON ({exc})") from None
        missing = [k for k in ("id", "label", "answer", "context") if k not in item]
        if missing or item["label"] not in LABELS:
            raise EvalFileError(f"{path}:{n}: needs id, label (faithful|fabricated), answer, context")
        unknown = [c for c in item["context"] if kb.get(c) is None]
        if unknown:
            raise EvalFileError(f"{path}:{n}: unknown entry ids {unknown}")
        items.append(item)
    return items


def curated_lines(kb: KnowledgeBase) -> tuple[set[str], list[str]]:
    fixed = {texts.QUOTE_LEAD, texts.SOURCE_NOTE} | {texts.quote_heading(e.question) for e in kb.entries}
    return fixed, [e.answer.replace("\n", "") for e in kb.entries]


def not_curated(text: str, kb: KnowledgeBase) -> list[str]:
    """Lines of a quote-mode reply that are neither our fixed text nor a run of curated answer text."""
    fixed, answers = curated_lines(kb)
    return [
        line for line in text.split("\n") if line.strip() and line not in fixed and not any(line in a for a in answers)
    ]


def quote_reply(raw: str, context_ids: list[str], units: dict[str, quote.EntryUnits]) -> str | None:
    """What quote mode would show for this model output (None: the safe fallback)."""
    context = {i: units[i] for i in context_ids}
    try:
        selection = quote.parse(raw, quote.labels(context.values()))
    except quote.SelectionError:
        return None
    if not selection.answerable or not selection.quotes:
        return None
    return quote.compose(quote.chosen_units(selection, context))


def quote_attempts(item: dict, units: dict[str, quote.EntryUnits]) -> list[str]:
    if item["label"] == "faithful":
        return [json.dumps({"answerable": True, "quotes": item.get("select") or []}, ensure_ascii=False)]
    first = units[item["context"][0]].units[0].label
    claim = item.get("claim") or item["answer"]
    return [
        item["answer"],
        json.dumps({"answerable": True, "quotes": [first, claim]}, ensure_ascii=False),
        json.dumps({"answerable": True, "quotes": [first], "answer": claim}, ensure_ascii=False),
    ]


def evaluate(
    items: list[dict], kb: KnowledgeBase, prompts: Prompts, threshold: float = guard.DEFAULT_THRESHOLD
) -> dict:
    canary = "CNRYEVAL0000"
    system = render(prompts.system, canary=canary, refusal=prompts.refusal)
    allowed = [prompts.refusal, texts.REFERRAL, texts.SOURCE_NOTE, texts.LLM_FALLBACK]
    for e in kb.entries:
        allowed.extend((e.question, e.answer, *e.alternates))
    leak = guard.LeakDetector(system, canary, allowed)
    units = quote.index_units(kb.entries)
    gen: dict[str, Counter] = {label: Counter() for label in LABELS}
    quo: dict[str, Counter] = {label: Counter() for label in LABELS}
    by_kind: dict[str, Counter] = {}
    misses: list[dict] = []
    for item in items:
        label = item["label"]
        verdict = guard.check(
            item["answer"],
            context={i: kb.get(i) for i in item["context"]},
            refusal=prompts.refusal,
            leak=leak,
            boilerplate=(texts.SOURCE_NOTE, texts.REFERRAL),
            threshold=threshold,
        )
        shown = verdict.ok and not verdict.refusal
        gen[label]["shown" if shown else "withheld"] += 1
        kind = by_kind.setdefault(f"{label}:{item.get('kind', '')}", Counter())
        kind["shown" if shown else "withheld"] += 1
        if (label == "faithful") != shown:
            misses.append(
                {
                    "id": item["id"],
                    "label": label,
                    "kind": item.get("kind", ""),
                    "verdict": verdict.label,
                    "answer": item["answer"][:80],
                }
            )
        for raw in quote_attempts(item, units):
            text = quote_reply(raw, item["context"], units)
            if text is None:
                quo[label]["withheld"] += 1
                continue
            quo[label]["shown"] += 1
            claim = to_simplified(item.get("claim") or "")
            if not_curated(text, kb) or (label == "fabricated" and claim and claim in text):
                quo[label]["not_curated"] += 1
    report = {"items": len(items)}
    for mode, counts in (("generate", gen), ("quote", quo)):
        f, x = counts["faithful"], counts["fabricated"]
        report[mode] = {
            "faithful": sum(f[k] for k in ("shown", "withheld")),
            "faithful_withheld": f["withheld"],
            "faithful_withheld_rate": round(f["withheld"] / max(1, f["shown"] + f["withheld"]), 4),
            "fabricated_outputs": x["shown"] + x["withheld"],
            "fabrications_shown": x["shown"] if mode == "generate" else x["not_curated"],
            "fabrications_shown_rate": round(
                (x["shown"] if mode == "generate" else x["not_curated"]) / max(1, x["shown"] + x["withheld"]), 4
            ),
        }
        if mode == "quote":
            report[mode]["lines_not_curated"] = f["not_curated"] + x["not_curated"]
            report[mode]["fabricated_outputs_shown_as_curated_text"] = x["shown"] - x["not_curated"]
    report["generate"]["by_kind"] = {k: dict(v) for k, v in sorted(by_kind.items())}
    report["generate"]["misses"] = misses
    return report


def render_report(report: dict) -> str:
    g, q = report["generate"], report["quote"]
    lines = [
        f"{report['items']} labelled model answers",
        "",
        "mode      faithful withheld        fabrications shown",
        f"generate  {g['faithful_withheld']:>3}/{g['faithful']:<3} ({g['faithful_withheld_rate']:.1%})"
        f"         {g['fabrications_shown']:>3}/{g['fabricated_outputs']:<3} ({g['fabrications_shown_rate']:.1%})",
        f"quote     {q['faithful_withheld']:>3}/{q['faithful']:<3} ({q['faithful_withheld_rate']:.1%})"
        f"         {q['fabrications_shown']:>3}/{q['fabricated_outputs']:<3} ({q['fabrications_shown_rate']:.1%})"
        f"   lines not curated: {q['lines_not_curated']}",
    ]
    if g["misses"]:
        lines += ["", "generate mode, wrong verdicts:"]
        lines += [f"  {m['id']} [{m['label']}/{m['kind']}] {m['verdict']} — {m['answer']}" for m in g["misses"]]
    return "\n".join(lines)
