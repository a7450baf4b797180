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
import itertools
import sqlite3
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from cachetools import LRUCache

from bot.answering.types import Route
from storage import queries

KINDS = ("improved", "regressed", "changed", "unchanged")
REPLAYABLE_VIA = (None, "", "text")
MEMO_SIZE = 100_000  # distinct questions whose new answer is kept (memory stays bounded on any log)


class _Matches(Protocol):
    def match(self, question: str, conv: Any = None) -> Any: ...


def classify(
    old_route: str, old_faq: str | None, new_route: str, new_faq: str | None, answer_changed: bool = False
) -> str:
    if old_route == Route.FAQ:
        if new_route != Route.FAQ:
            return "regressed"
        if new_faq != old_faq or answer_changed:
            return "changed"
        return "unchanged"
    if new_route == Route.FAQ:
        return "improved"
    if old_route == Route.LLM or new_route == old_route:
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
    max_changes: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Replay the logged turns selected like ``faqbot logs list`` (newest first; ``limit`` None or 0 = all), streaming
    from the cursor; ``progress(1)`` after each turn.

    Returns {knowledge_version, selected, replayed, skipped, counts: {kind: n}, transitions: {"none->faq": n},
    changes: [...]} where each change (every turn whose kind is not ``unchanged``) has turn_id, ts, channel,
    question, old_route, old_faq_id, old_score, new_route, new_faq_id, new_score, answer_changed, kind.
    """
    rows = queries.iter_turns(conn, route=route, since=since, channel=channel, feedback=feedback)
    if limit and limit > 0:
        rows = itertools.islice(rows, int(limit))
    counts: Counter[str] = Counter({k: 0 for k in KINDS})
    transitions: Counter[str] = Counter()
    changes: list[dict[str, Any]] = []
    changed = skipped = selected = 0
    # The matcher is deterministic for a question without conversation context: match each distinct question once
    # (a year of traffic repeats the same few thousand questions).
    memo: LRUCache[str, Any] = LRUCache(MEMO_SIZE)
    for r in rows:
        selected += 1
        if progress is not None:
            progress(1)
        question = (r.get("question") or "").strip()
        if r.get("via") not in REPLAYABLE_VIA or not question:
            skipped += 1
            continue
        new = memo.get(question)
        if new is None:
            new = memo[question] = answerer.match(question)
        new_route = new.route.value
        old_route = r["route"]
        answer_changed = (
            old_route == Route.FAQ
            and new_route == Route.FAQ
            and new.faq_id == r.get("faq_id")
            and (new.text or "").strip() not in (r.get("answer") or "")
        )
        kind = classify(old_route, r.get("faq_id"), new_route, new.faq_id, answer_changed)
        counts[kind] += 1
        transitions[f"{old_route}->{new_route}"] += 1
        if kind != "unchanged":
            changed += 1
            if len(changes) < max_changes:
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
        "selected": selected,
        "replayed": selected - skipped,
        "skipped": skipped,
        "counts": dict(counts),
        "transitions": dict(transitions.most_common()),
        "changes": changes,
        "changes_total": changed,  # `changes` lists the first max_changes of them (newest first)
    }
