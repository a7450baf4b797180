"""What-if before publishing an FAQ edit: re-run logged questions through the matcher with the current (or an
edited) knowledge base and thresholds, and report which routes and answers would change.

Only typed questions are replayed (``via`` text); taps on topic buttons and numbered choices are skipped, as
are turns without a question (errors). The LLM is never called: an old ``llm`` turn counts as *improved* when
the matcher now answers it directly and as unchanged otherwise (it would still go to the LLM fallback).

Kinds: ``improved`` (clarify/none/llm -> faq), ``regressed`` (faq -> anything else), ``changed`` (faq -> another
entry, the same entry with a different answer text, or clarify <-> none), ``unchanged``.
"""
from __future__ import annotations

import datetime as _dt
import sqlite3
from collections import Counter
from typing import Any, Protocol

from storage import queries

KINDS = ("improved", "regressed", "changed", "unchanged")
REPLAYABLE_VIA = (None, "", "text")
ALL = 1 << 62  # "no limit" for queries.list_turns


class _Matches(Protocol):
    def match(self, question: str, conv: Any = None) -> Any: ...


def classify(old_route: str, old_faq: str | None, new_route: str, new_faq: str | None,
             answer_changed: bool = False) -> str:
    if old_route == "faq":
        if new_route != "faq":
            return "regressed"
        if new_faq != old_faq or answer_changed:
            return "changed"
        return "unchanged"
    if new_route == "faq":
        return "improved"
    if old_route == "llm" or new_route == old_route:
        return "unchanged"
    return "changed"


def replay(
    conn: sqlite3.Connection,
    answerer: _Matches,
    *,
    route: str | None = None,
    since: _dt.datetime | None = None,
    channel: str | None = None,
    feedback: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Replay the logged turns selected like ``faqbot logs list`` (newest first; ``limit`` None or 0 = all).

    Returns {knowledge_version, selected, replayed, skipped, counts: {kind: n}, transitions: {"none->faq": n},
    changes: [...]} where each change (every turn whose kind is not ``unchanged``) has turn_id, ts, channel,
    question, old_route, old_faq_id, old_score, new_route, new_faq_id, new_score, answer_changed, kind.
    """
    rows = queries.list_turns(conn, route=route, since=since, channel=channel, feedback=feedback,
                              limit=limit if limit and limit > 0 else ALL)
    counts: Counter[str] = Counter({k: 0 for k in KINDS})
    transitions: Counter[str] = Counter()
    changes: list[dict[str, Any]] = []
    skipped = 0
    for r in rows:
        question = (r.get("question") or "").strip()
        if r.get("via") not in REPLAYABLE_VIA or not question:
            skipped += 1
            continue
        new = answerer.match(question)
        new_route = getattr(new.route, "value", str(new.route))
        old_route = r["route"]
        answer_changed = (
            old_route == "faq" and new_route == "faq" and new.faq_id == r.get("faq_id")
            and (new.text or "").strip() not in (r.get("answer") or "")
        )
        kind = classify(old_route, r.get("faq_id"), new_route, new.faq_id, answer_changed)
        counts[kind] += 1
        transitions[f"{old_route}->{new_route}"] += 1
        if kind != "unchanged":
            changes.append(
                {
                    "turn_id": r["turn_id"],
                    "ts": r["ts"],
                    "channel": r["channel"],
                    "question": question,
                    "old_route": old_route,
                    "old_faq_id": r.get("faq_id"),
                    "old_score": r.get("score"),
                    "new_route": new_route,
                    "new_faq_id": new.faq_id,
                    "new_score": round(float(new.score or 0.0), 1),
                    "answer_changed": answer_changed,
                    "kind": kind,
                }
            )
    kb = getattr(answerer, "kb", None)
    return {
        "knowledge_version": getattr(kb, "version", None),
        "selected": len(rows),
        "replayed": len(rows) - skipped,
        "skipped": skipped,
        "counts": dict(counts),
        "transitions": dict(transitions.most_common()),
        "changes": changes,
    }
