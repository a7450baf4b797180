"""`faqbot eval` and `faqbot knowledge check`: how well matching generalises, and where alternates collide."""

from __future__ import annotations

import json
from pathlib import Path

from bot.answering.types import Route
from knowledge.retrieve import retriever_for


class LabelledFileError(ValueError):
    """A labelled questions file that cannot be read or has a bad line (the message names the file and line)."""


def load_labelled(path: str | Path) -> list[dict]:
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelledFileError(f"{path}: cannot read: {exc}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelledFileError(f"{path}:{n}: not JSON: {exc}") from None
        if not isinstance(row, dict) or not isinstance(row.get("q"), str):
            raise LabelledFileError(f'{path}:{n}: expected an object with a string "q"')
        rows.append({"q": row["q"], "sections": list(row.get("sections") or []), "kind": row.get("kind", "in")})
    return rows


# Rows of these kinds are listed but not scored: the labeller could not decide whether the FAQ answers them.
UNSCORED_KINDS = frozenset({"amb"})


def evaluate(settings, kb, path: str | Path) -> dict:
    """Score offline matching (no LLM) on one labelled file.

    * in-scope (`sections` not empty): direct-correct, direct-wrong, *useful first reply* (a correct direct answer,
      or a right entry among the choices / related questions shown), recall@3 of the ranked candidates;
    * out-of-scope (`sections` empty): how many got a direct answer (each one is a wrong answer to someone);
    * `kind` "amb" rows are counted as excluded and not scored.
    """
    from bot.answering.answerer import Answerer

    answerer = Answerer(settings, kb)
    retriever = retriever_for(kb)
    rows = load_labelled(path)
    in_scope = direct_correct = direct_wrong = clarify_ok = recall3 = ctx_hits = useful = 0
    oos = oos_direct = excluded = 0
    failures = []
    for row in rows:
        if row["kind"] in UNSCORED_KINDS:
            excluded += 1
            continue
        reply = answerer.match(row["q"])
        want = set(row["sections"])
        top3 = [c.section for c in reply.candidates[:3]]
        shown = [c.section for c in reply.choices]
        item = {
            "q": row["q"],
            "kind": row["kind"],
            "want": sorted(want),
            "route": reply.route.value,
            "section": reply.section,
            "top3": top3,
            "shown": shown,
            "score": round(reply.score, 1),
            "reason": reply.reason,
        }
        if want:
            in_scope += 1
            hit3 = bool(want & set(top3))
            recall3 += hit3
            ctx = [e.section for e in retriever.retrieve(reply.normalized, settings.llm_top_k)]
            item["context"] = ctx
            ctx_hits += bool(want & set(ctx))
            if reply.route is Route.FAQ:
                if reply.section in want:
                    direct_correct += 1
                    useful += 1
                else:
                    direct_wrong += 1
                    failures.append({**item, "problem": "direct-wrong"})
            elif want & set(shown):
                useful += 1
                if reply.route is Route.CLARIFY:
                    clarify_ok += 1
                    failures.append({**item, "problem": "clarify"})
                else:
                    failures.append({**item, "problem": "related"})
            else:
                failures.append({**item, "problem": "missed" if not hit3 else "not-direct"})
        else:
            oos += 1
            if reply.route is Route.FAQ:
                oos_direct += 1
                failures.append({**item, "problem": "oos-direct"})
    report = {
        "file": str(path),
        "knowledge_version": kb.version,
        "questions": len(rows),
        "excluded": excluded,
        "in_scope": in_scope,
        "direct_correct": direct_correct,
        "direct_correct_rate": direct_correct / in_scope if in_scope else 0.0,
        "direct_wrong": direct_wrong,
        "clarify_with_correct": clarify_ok,
        "useful": useful,
        "useful_rate": useful / in_scope if in_scope else 0.0,
        "out_of_scope": oos,
        "oos_direct": oos_direct,
        "recall_at_3": recall3 / in_scope if in_scope else 0.0,
        "failures": failures,
    }
    report["context_recall"] = ctx_hits / in_scope if in_scope else 0.0
    report["context_k"] = settings.llm_top_k
    return report


def threshold_problems(report: dict, *, min_direct=None, max_wrong=None, min_recall=None, min_useful=None) -> list[str]:
    """The `--min-*` / `--max-*` thresholds one report misses, as sentences (empty when all are met)."""
    out = []
    name = report["file"]
    if min_direct is not None and report["direct_correct_rate"] * 100 < min_direct:
        out.append(f"{name}: direct-correct {report['direct_correct_rate']:.1%} is below --min-direct {min_direct}%")
    wrong = report["direct_wrong"] + report["oos_direct"]
    if max_wrong is not None and wrong > max_wrong:
        out.append(f"{name}: {wrong} wrong direct answers exceed --max-wrong {max_wrong}")
    if min_recall is not None and report["recall_at_3"] * 100 < min_recall:
        out.append(f"{name}: recall@3 {report['recall_at_3']:.1%} is below --min-recall {min_recall}%")
    if min_useful is not None and report["useful_rate"] * 100 < min_useful:
        out.append(f"{name}: useful first reply {report['useful_rate']:.1%} is below --min-useful {min_useful}%")
    return out


def render(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    n = report["in_scope"] or 1
    t = Table(title=f"faqbot eval — {report['file']} (knowledge {report['knowledge_version']})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("questions", str(report["questions"]))
    if report.get("excluded"):
        t.add_row("excluded (ambiguous, not scored)", str(report["excluded"]))
    t.add_row("in-scope", str(report["in_scope"]))
    t.add_row("direct-correct", f"{report['direct_correct']} ({report['direct_correct'] / n:.1%})")
    t.add_row("direct-wrong", str(report["direct_wrong"]))
    t.add_row("out-of-scope answered directly", f"{report['oos_direct']} of {report['out_of_scope']}")
    t.add_row("useful first reply", f"{report['useful']} ({report['useful'] / n:.1%})")
    t.add_row("clarify containing correct", str(report["clarify_with_correct"]))
    t.add_row("recall@3", f"{report['recall_at_3']:.1%}")
    if "context_recall" in report:
        t.add_row(f"LLM context recall (k={report['context_k']})", f"{report['context_recall']:.1%}")
    c.print(t)
    if report["failures"]:
        # One line per miss (a table would squeeze the question into a narrow column on a terminal).
        c.print(f"misses ({len(report['failures'])}): not answered directly and correctly", style="bold")
        for x in report["failures"]:
            got = x["route"] + (f" {x['section']}" if x["section"] is not None else "")
            c.print(
                f"  {x['problem']:<12} want {x['want']} got {got}, shown {x['shown']}, top3 {x['top3']}, "
                f"score {x['score']}: {x['q']}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


def knowledge_conflicts(kb) -> list[dict]:
    """Alternates of one entry that score higher against another entry's phrases (leave-one-out).

    Each alternate is scored against every entry at once by the matcher's bulk `rank` (the same scores as
    `phrase_score`, tests/knowledge/test_match.py); only its own entry's other phrases are scored one by one.
    """
    from knowledge.bigrams import bigram_set
    from knowledge.match import matcher_for

    m = matcher_for(kb)
    everyone = list(range(len(m.entries)))
    out = []
    for i, e in enumerate(m.entries):
        for p in m.by_entry[i]:
            q = p.text
            qg = bigram_set(q)
            qw = sum(m._w(g) for g in qg) or 1.0
            own = max((m.phrase_score(q, qg, qw, o) for o in m.by_entry[i] if o is not p), default=0.0)
            # Best first, ties by entry order: the first other-section entry is the best other one.
            ranked = m.rank(q, limit=len(everyone), within=everyone)
            best = next((s for s in ranked if s.entry is not e and s.entry.section != e.section), None)
            if best is not None and best.score > own:
                out.append(
                    {
                        "file": e.source_file,
                        "faq_id": e.id,
                        "alternate": q,
                        "own_score": round(own, 1),
                        "other_id": best.entry.id,
                        "other_score": round(best.score, 1),
                    }
                )
    return out
