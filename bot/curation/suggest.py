"""Reviews become knowledge and tests: suggestions from curators' verdicts, drafts, and the eval export.

* ``plan_suggestions`` -- "should be entry X" reviews become alternates of X (masked, deduplicated, checked against
  the loader and ``knowledge check``); "needs a new entry" reviews, grouped by similarity, become draft entries.
  Nothing is written: the plan holds the new file texts, their diff, the conflicts and the replay of the log
  against the changed knowledge. ``write_plan`` writes it and marks the reviews applied.
* ``draft_from_answer`` -- a curator's answer text for a gap cluster (Telegram / Matrix) becomes a draft.
* ``eval_rows`` -- reviewed turns in the eval file format (``q``, ``sections``, ``kind``) for ``faqbot eval``.
* Chat curation helpers shared by Telegram and Matrix: ``gap_listing``, ``label_cluster``, ``draft_for_cluster``,
  ``turn_owner_and_question`` (blocking: run them in a thread).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.answering.privacy import PLACEHOLDERS, mask_pii
from bot.answering.types import Route
from knowledge.curation import (
    DraftEntry,
    append_alternates,
    draft_id,
    drafts_dir,
    existing_ids,
    load_with_changes,
    unified_diff,
    write_changes,
)
from knowledge.loader import KnowledgeBase
from knowledge.match import Matcher, matcher_for
from storage import reviews

CLUSTER_SIMILARITY = 0.5  # rapidfuzz ratio (0-1) of the content words for two "new entry" questions to group


def _has_placeholder(text: str) -> bool:
    return any(p in text for p in PLACEHOLDERS.values())


@dataclass
class Plan:
    alternates: dict[str, list[str]] = field(default_factory=dict)  # faq_id -> new alternates
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {question, faq_id, reason}
    drafts: list[DraftEntry] = field(default_factory=list)
    changes: dict[str, str] = field(default_factory=dict)  # path relative to the knowledge folder -> new text
    originals: dict[str, str | None] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # knowledge check on the new alternates
    replay: dict[str, Any] | None = None
    review_ids: list[int] = field(default_factory=list)  # reviews the plan settles (applied on write)
    kb: KnowledgeBase | None = None

    @property
    def empty(self) -> bool:
        return not self.changes

    def diff(self) -> str:
        return "".join(unified_diff(rel, self.originals.get(rel), text) for rel, text in self.changes.items())

    def as_dict(self) -> dict[str, Any]:
        return {
            "alternates": self.alternates,
            "drafts": [
                {
                    "id": d.id,
                    "section": d.section,
                    "question": d.question,
                    "alternates": d.alternates,
                    "turns": d.turn_ids,
                }
                for d in self.drafts
            ],
            "skipped": self.skipped,
            "conflicts": self.conflicts,
            "files": sorted(self.changes),
            "replay": None
            if self.replay is None
            else {k: self.replay[k] for k in ("selected", "replayed", "counts", "transitions") if k in self.replay},
        }


def _entry_path(kb: KnowledgeBase, faq_id: str) -> str:
    e = kb.get(faq_id)
    return f"faq/{e.source_file}"


def _clean(question: str | None) -> str:
    # The log holds masked text already; mask again so nothing unmasked can reach a knowledge file.
    return mask_pii((question or "").strip()).text.strip()


def plan_suggestions(conn: sqlite3.Connection, kb: KnowledgeBase, *, since: str | None = None) -> Plan:
    """What the open reviews (latest verdict ``entry`` / ``new-entry``, not yet applied) would change."""
    assert kb.directory is not None, "suggestions need a knowledge folder"
    kdir = Path(kb.directory)
    matcher = matcher_for(kb)
    norm = matcher.normalizer
    owner = {}
    for e in kb.entries:
        for p in (e.question, *e.alternates):
            owner.setdefault(norm.normalize(p).text, e.id)
    plan = Plan()
    rows = reviews.latest_reviews(conn, verdicts=reviews.OPEN_VERDICTS, status="open", since=since)

    # 1. "should be entry X": alternates of X.
    seen: dict[str, str] = {}
    for r in (r for r in rows if r["verdict"] == "entry"):
        q, target = _clean(r["question"]), r["faq_id"]
        key = norm.normalize(q).text if q else ""
        reason = None
        if kb.get(target) is None:
            reason = f"unknown entry {target}"
        elif not key:
            reason = "no question text"
        elif _has_placeholder(q):
            reason = "contains masked personal data"
        elif owner.get(key) == target:
            reason = "already an alternate of this entry"
        elif key in owner:
            reason = f"conflict: already an alternate of {owner[key]}"
        elif seen.get(key) not in (None, target):
            reason = f"conflict: also reviewed as entry {seen[key]}"
        elif key in seen:
            plan.review_ids.append(r["id"])  # a duplicate of a suggestion in this plan
            continue
        if reason is not None:
            plan.skipped.append({"question": q, "faq_id": target, "reason": reason, "turn_id": r["turn_id"]})
            if reason.startswith("already an alternate of this"):
                plan.review_ids.append(r["id"])  # nothing left to do
            continue
        seen[key] = target
        plan.alternates.setdefault(target, []).append(q)
        plan.review_ids.append(r["id"])
    for faq_id, qs in plan.alternates.items():
        rel = _entry_path(kb, faq_id)
        old = (kdir / rel).read_text(encoding="utf-8")
        plan.originals[rel] = old
        plan.changes[rel] = append_alternates(old, qs)

    # 2. "needs a new entry": drafts, one per group of similar questions.
    taken = existing_ids(kdir, kb)
    for group in _group_new_entries([r for r in rows if r["verdict"] == "new-entry"], norm):
        questions = [
            q for q, _ in Counter(_clean(r["question"]) for r in group).most_common() if q and not _has_placeholder(q)
        ]
        if not questions:
            plan.skipped += [
                {
                    "question": _clean(r["question"]),
                    "faq_id": None,
                    "turn_id": r["turn_id"],
                    "reason": "contains masked personal data",
                }
                for r in group
            ]
            continue
        proposed = next((r["faq_id"] for r in group if r["faq_id"]), None)
        base = proposed or "draft_" + hashlib.sha1(questions[0].encode()).hexdigest()[:6]
        d = make_draft(kb, matcher, questions, taken=taken, base_id=base, turn_ids=[r["turn_id"] for r in group])
        taken.add(d.id)
        plan.drafts.append(d)
        plan.changes[f"drafts/{d.id}.toml"] = d.render()
        plan.originals[f"drafts/{d.id}.toml"] = None
        plan.review_ids += [r["id"] for r in group]

    served = {rel: text for rel, text in plan.changes.items() if rel.startswith("faq/")}
    plan.kb = load_with_changes(kdir, served) if served else kb  # raises KnowledgeError if it would not load
    if served:
        from bot.curation.evaluate import knowledge_conflicts

        new = {(faq_id, norm.normalize(q).text) for faq_id, qs in plan.alternates.items() for q in qs}
        plan.conflicts = [c for c in knowledge_conflicts(plan.kb) if (c["faq_id"], c["alternate"]) in new]
    return plan


def make_draft(
    kb: KnowledgeBase,
    matcher: Matcher,
    questions: list[str],
    *,
    taken: set[str],
    base_id: str,
    turn_ids: list[str],
    answer: str | None = None,
    curator: str = "",
) -> DraftEntry:
    """A draft entry for ``questions`` (most frequent first); its section is guessed from the nearest entry."""
    ranked = matcher.rank(matcher.normalizer.normalize(questions[0]).text, limit=1)
    near = ranked[0] if ranked else None
    notes = []
    if near is not None:
        notes.append(
            f"section guessed from the nearest entry {near.entry.id} (section {near.entry.section}, "
            f"score {near.score:.0f}): check it"
        )
    if curator:
        notes.append(f"answer written by {curator}")
    d = DraftEntry(
        id=draft_id(base_id, taken),
        section=near.entry.section if near else 0,
        question=questions[0],
        alternates=questions[1:],
        turn_ids=turn_ids,
        notes=notes,
        title=questions[0][:12],
    )
    if answer is not None:
        d.answer = answer
    return d


def _group_new_entries(rows: list[dict[str, Any]], norm) -> list[list[dict[str, Any]]]:
    """Reviews naming the same proposed id go together; the others join the first similar group (greedy)."""
    from rapidfuzz.fuzz import ratio

    from storage.gaps import content_text

    groups: list[list[dict[str, Any]]] = []
    keys: list[list[str]] = []
    by_id: dict[str, int] = {}
    for r in rows:
        key = content_text(norm.normalize(r["question"] or "").text)
        if r["faq_id"] and r["faq_id"] in by_id:
            i = by_id[r["faq_id"]]
        else:
            i = next(
                (
                    gi
                    for gi, ks in enumerate(keys)
                    if not (r["faq_id"] and any(x["faq_id"] and x["faq_id"] != r["faq_id"] for x in groups[gi]))
                    and any(ratio(key, k) / 100 >= CLUSTER_SIMILARITY for k in ks)
                ),
                None,
            )
        if i is None:
            i = len(groups)
            groups.append([])
            keys.append([])
        groups[i].append(r)
        keys[i].append(key)
        if r["faq_id"]:
            by_id.setdefault(r["faq_id"], i)
    return groups


def write_plan(plan: Plan, kdir: Path, conn: sqlite3.Connection) -> list[Path]:
    """Write the planned files and mark the reviews applied (they leave the gap inbox)."""
    written = write_changes(kdir, plan.changes)
    reviews.mark_applied(conn, plan.review_ids)
    return written


def draft_from_answer(
    kb: KnowledgeBase,
    questions: list[str],
    answer: str,
    *,
    turn_ids: list[str],
    curator: str,
    base_id: str | None = None,
) -> tuple[DraftEntry, Path]:
    """Write a draft entry whose answer a curator typed (chat curation); returns it and its file."""
    assert kb.directory is not None
    kdir = Path(kb.directory)
    qs = [q for q, _ in Counter(_clean(q) for q in questions).most_common() if q and not _has_placeholder(q)]
    if not qs:
        raise ValueError("no question without masked personal data to build an entry from")
    base = base_id or "draft_" + hashlib.sha1(qs[0].encode()).hexdigest()[:6]
    d = make_draft(
        kb,
        matcher_for(kb),
        qs,
        taken=existing_ids(kdir, kb),
        base_id=base,
        turn_ids=turn_ids,
        answer=_clean(answer),
        curator=curator,
    )
    [path] = write_changes(kdir, {f"drafts/{d.id}.toml": d.render()})
    return d, path


def list_drafts(kdir: Path) -> list[Path]:
    return sorted(drafts_dir(kdir).glob("*.toml"))


# ------------------------------------------------------------------------------------------------ eval export
def eval_rows(conn: sqlite3.Connection, kb: KnowledgeBase, *, since: str | None = None) -> tuple[list[dict], Counter]:
    """The reviewed turns as eval rows (q, sections, kind), one per distinct question (the latest review wins),
    and the count of reviews left out by reason."""
    by_q: dict[str, dict[str, Any]] = {}
    skipped: Counter[str] = Counter()
    for r in reviews.latest_reviews(conn, since=since):
        q = _clean(r["question"])
        if not q:
            skipped["no question"] += 1
            continue
        kind = "pii" if r["masked"] else "in"
        v = r["verdict"]
        if v == "entry":
            e = kb.get(r["faq_id"])
            if e is None:
                skipped["entry not in the knowledge"] += 1
                continue
            row = {"q": q, "sections": [e.section], "kind": kind}
        elif v == "correct" and r["route"] == Route.FAQ and r["turn_section"] is not None:
            row = {"q": q, "sections": [r["turn_section"]], "kind": kind}
        elif v == "out-of-scope" or (v == "correct" and r["route"] == Route.NONE):
            row = {"q": q, "sections": [], "kind": "pii" if r["masked"] else "oos"}
        elif v == "correct":
            skipped["correct on a clarify/LLM reply (no single entry)"] += 1
            continue
        elif v == "new-entry":
            skipped["new entry not approved yet"] += 1
            continue
        else:
            skipped["spam"] += 1
            continue
        by_q.pop(q, None)
        by_q[q] = row
    return list(by_q.values()), skipped


def eval_jsonl(rows: list[dict]) -> str:
    return "".join(
        json.dumps({"q": r["q"], "sections": r["sections"], "kind": r["kind"]}, ensure_ascii=False) + "\n" for r in rows
    )


# ------------------------------------------------------------------------------------------------ chat curation
def gap_listing(db: Path, matcher: Matcher, limit: int) -> list[dict[str, Any]] | None:
    """The top ``limit`` clusters of the gap inbox; None when there is no log yet."""
    from storage.db import open_db_sync
    from storage.gaps import gap_clusters

    try:
        conn = open_db_sync(db, readonly=True)
    except FileNotFoundError:
        return None
    try:
        return gap_clusters(conn, matcher, limit=limit)
    finally:
        conn.close()


def cluster_questions(cluster: dict[str, Any]) -> list[str]:
    return [q["question"] for q in cluster.get("questions") or []]


def label_cluster(db: Path, cluster: dict[str, Any], verdict: str, faq_id: str | None, *, curator: str) -> int:
    """Label every gap turn of a cluster still in the inbox; returns how many."""
    from storage.db import open_db_sync

    conn = open_db_sync(db, readonly=False)
    try:
        turns = reviews.open_gap_turns(conn, cluster_questions(cluster))
        if turns:
            reviews.add_reviews(conn, turns, verdict, curator=curator, faq_id=faq_id)
        return len(turns)
    finally:
        conn.close()


def draft_for_cluster(
    db: Path, kb: KnowledgeBase, cluster: dict[str, Any], answer: str, *, curator: str
) -> tuple[str, str]:
    """A curator's answer for a cluster becomes a draft entry; its open turns are reviewed as that new entry
    (applied: the draft exists). Returns the draft id and its path relative to the knowledge folder."""
    from storage.db import open_db_sync

    conn = open_db_sync(db, readonly=False)
    try:
        turns = reviews.open_gap_turns(conn, cluster_questions(cluster))
        draft, path = draft_from_answer(kb, cluster_questions(cluster), answer, turn_ids=turns, curator=curator)
        if turns:
            rows = reviews.add_reviews(
                conn, turns, "new-entry", curator=curator, faq_id=draft.id, note="draft from chat"
            )
            reviews.mark_applied(conn, [r["id"] for r in rows])
    finally:
        conn.close()
    try:
        shown = str(path.relative_to(kb.directory))
    except ValueError:
        shown = path.name
    return draft.id, shown


def turn_owner_and_question(db: Path, turn_id: str) -> tuple[str | None, str | None] | None:
    """(user pseudonym, masked question) of a logged turn, to check who may ask to be told about it."""
    from storage.db import open_db_sync

    try:
        conn = open_db_sync(db, readonly=True)
    except FileNotFoundError:
        return None
    try:
        row = conn.execute(
            "SELECT c.user_hash, t.question FROM turns t JOIN conversations c ON c.id = t.conversation_id "
            "WHERE t.id = ?",
            (turn_id,),
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else (row[0], row[1])
