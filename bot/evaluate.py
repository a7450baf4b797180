"""`faqbot eval` and `faqbot knowledge check`: how well matching generalises, and where alternates collide."""
from __future__ import annotations

import json
from pathlib import Path

from bot.replies import Route


def load_labelled(path: str | Path) -> list[dict]:
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"{path}: cannot read: {exc}")
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}:{n}: not JSON: {exc}")
        if not isinstance(row, dict) or not isinstance(row.get("q"), str):
            raise SystemExit(f"{path}:{n}: expected an object with a string \"q\"")
        rows.append({"q": row["q"], "sections": list(row.get("sections") or []), "kind": row.get("kind", "in")})
    return rows


def evaluate(settings, kb, path: str | Path) -> dict:
    from bot.core import Answerer

    answerer = Answerer(settings, kb)
    retriever = None
    try:
        from knowledge.retrieve import Retriever
    except ImportError:
        pass
    else:
        retriever = Retriever(kb, answerer.matcher)
    rows = load_labelled(path)
    in_scope = direct_correct = direct_wrong = clarify_ok = recall3 = ctx_hits = 0
    oos = oos_direct = 0
    failures = []
    for row in rows:
        reply = answerer.match(row["q"])
        want = set(row["sections"])
        top3 = [c.section for c in reply.candidates[:3]]
        item = {"q": row["q"], "kind": row["kind"], "want": sorted(want), "route": reply.route.value,
                "section": reply.section, "top3": top3, "score": round(reply.score, 1)}
        if want:
            in_scope += 1
            hit3 = bool(want & set(top3))
            recall3 += hit3
            if retriever is not None:
                ctx = [e.section for e in retriever.retrieve(reply.normalized, settings.llm_top_k)]
                item["context"] = ctx
                ctx_hits += bool(want & set(ctx))
            if reply.route is Route.FAQ:
                if reply.section in want:
                    direct_correct += 1
                else:
                    direct_wrong += 1
                    failures.append({**item, "problem": "direct-wrong"})
            elif reply.route is Route.CLARIFY and want & {c.section for c in reply.choices}:
                clarify_ok += 1
                failures.append({**item, "problem": "clarify"})
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
        "in_scope": in_scope,
        "direct_correct": direct_correct,
        "direct_correct_rate": direct_correct / in_scope if in_scope else 0.0,
        "direct_wrong": direct_wrong,
        "clarify_with_correct": clarify_ok,
        "out_of_scope": oos,
        "oos_direct": oos_direct,
        "recall_at_3": recall3 / in_scope if in_scope else 0.0,
        "failures": failures,
    }
    if retriever is not None:
        report["context_recall"] = ctx_hits / in_scope if in_scope else 0.0
        report["context_k"] = settings.llm_top_k
    return report


def render(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    n = report["in_scope"] or 1
    t = Table(title=f"faqbot eval — {report['file']} (knowledge {report['knowledge_version']})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("questions", str(report["questions"]))
    t.add_row("in-scope", str(report["in_scope"]))
    t.add_row("direct-correct", f"{report['direct_correct']} ({report['direct_correct'] / n:.1%})")
    t.add_row("direct-wrong", str(report["direct_wrong"]))
    t.add_row("clarify containing correct", str(report["clarify_with_correct"]))
    t.add_row("out-of-scope answered directly", f"{report['oos_direct']} of {report['out_of_scope']}")
    t.add_row("recall@3", f"{report['recall_at_3']:.1%}")
    if "context_recall" in report:
        t.add_row(f"LLM context recall (k={report['context_k']})", f"{report['context_recall']:.1%}")
    c.print(t)
    if report["failures"]:
        f = Table(title="not answered directly and correctly")
        for col in ("problem", "question", "want", "route", "section", "top3", "score"):
            f.add_column(col)
        for x in report["failures"]:
            f.add_row(x["problem"], x["q"], str(x["want"]), x["route"], str(x["section"]), str(x["top3"]), str(x["score"]))
        c.print(f)


def knowledge_conflicts(kb) -> list[dict]:
    """Alternates of one entry that score higher against another entry's phrases (leave-one-out)."""
    from knowledge.match import Matcher, grams

    m = Matcher(kb)
    out = []
    for i, e in enumerate(m.entries):
        for p in m.by_entry[i]:
            q = p.text
            qg = grams(q)
            qw = sum(m._w(g) for g in qg) or 1.0
            own = max((m.phrase_score(q, qg, qw, o) for o in m.by_entry[i] if o is not p), default=0.0)
            best_other, other_id = 0.0, None
            for j, _ in enumerate(m.entries):
                if j == i or m.entries[j].section == e.section:
                    continue
                s = max((m.phrase_score(q, qg, qw, o) for o in m.by_entry[j]), default=0.0)
                if s > best_other:
                    best_other, other_id = s, m.entries[j].id
            if other_id and best_other > own:
                out.append({"file": e.source_file, "faq_id": e.id, "alternate": q, "own_score": round(own, 1),
                            "other_id": other_id, "other_score": round(best_other, 1)})
    return out
