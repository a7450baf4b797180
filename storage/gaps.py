"""The gap inbox: what people asked that the FAQ did not answer well, grouped by similarity.

Source rows come from ``storage.queries.gap_rows``: turns routed ``clarify``/``none``, LLM answers rejected by the
guard, thumbs-down and "none of these". Turns without a usable question (greetings, empty input, errors, a bare
choice number) are left out.

Grouping is a greedy leader clustering on the normalized question, most frequent first. Similarity is an
IDF-weighted Dice coefficient over characters and character bigrams of the question's *content*: card names and
question words ("社保卡", "能不能", "怎么", "吗") are removed first, and the IDF comes from the knowledge base, so
words every entry uses weigh little and words no entry has ("公交", "养老金") weigh most. That keeps
"社保卡能坐公交吗" / "电子社保卡能乘公交吗" / "社保卡能不能刷公交" together and "社保卡能买药吗" apart.

Each cluster gets the nearest entry (``matcher.rank`` of its representative question) and a ready-to-paste TOML
snippet: alternates to add to that entry's file when it scores at least ``alternate_threshold``, otherwise a new
entry skeleton (deliberately incomplete, so ``faqbot knowledge check`` fails until a curator fills it in).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.answering.privacy import PLACEHOLDERS
from bot.answering.types import Route
from knowledge.bigrams import bigrams
from storage import queries

if TYPE_CHECKING:
    from knowledge.match import Matcher

DEFAULT_SIMILARITY = 0.35  # cluster join threshold (0-1)
DEFAULT_ALTERNATE_THRESHOLD = 40.0  # nearest-entry score (0-100) from which an alternate is suggested
MAX_EXAMPLES = 8
MAX_TURN_IDS = 20
MAX_COMPARED = 12  # members of a cluster a new question is compared with (its most frequent wordings)

# Words that say nothing about *what* is asked in this domain: the card's names and question words.
# Removed (longest first) before comparing questions; the knowledge base's own IDF handles the rest.
GENERIC_TERMS = (
    "电子社会保障卡",
    "社会保障卡",
    "实体社保卡",
    "电子社保卡",
    "社保卡",
    "电子社保",
    "社保",
    "可不可以",
    "能不能",
    "行不行",
    "是不是",
    "有没有",
    "要不要",
    "怎么办",
    "怎么样",
    "怎么",
    "如何",
    "什么",
    "可以",
    "能否",
    "是否",
    "需要",
    "请问",
    "为什么",
    "吗",
    "呢",
    "吧",
    "啊",
    "呀",
    "么",
    "嘛",
)
_GENERIC_RE = re.compile("|".join(re.escape(t) for t in sorted(GENERIC_TERMS, key=len, reverse=True)))


def content_text(normalized: str) -> str:
    """The normalized question without card names and question words (parts separated by spaces)."""
    return " ".join(_GENERIC_RE.sub(" ", normalized).split())


def _features(text: str) -> set[str]:
    out: set[str] = set()
    for part in text.split():
        out.update(part)
        out.update(bigrams(part))
    return out


class _Weights:
    """IDF of characters and bigrams over the knowledge base's entries (a feature no entry has weighs most)."""

    def __init__(self, matcher: Matcher | None):
        self.idf: dict[str, float] = {}
        n = 1
        if matcher is not None:
            df: dict[str, int] = {}
            for phrases in matcher.by_entry:
                feats: set[str] = set()
                for p in phrases:
                    feats |= _features(p.text)
                for f in feats:
                    df[f] = df.get(f, 0) + 1
            n = max(len(matcher.entries), 1)
            self.idf = {f: math.log(1 + (n + 1) / (c + 0.5)) for f, c in df.items()}
        self.unknown = math.log(1 + (n + 1) / 0.5)

    def weight(self, feats: set[str]) -> float:
        return sum(self.idf.get(f, self.unknown) for f in feats)


def similarity(a: set[str], b: set[str], weights: _Weights) -> float:
    """IDF-weighted Dice coefficient of two feature sets, 0-1."""
    if not a or not b:
        return 0.0
    total = weights.weight(a) + weights.weight(b)
    return 2 * weights.weight(a & b) / total if total else 0.0


def _has_placeholder(text: str) -> bool:
    return any(p in text for p in PLACEHOLDERS.values())


def _shown(row: dict[str, Any]) -> str:
    return (row.get("question") or "").strip() or row.get("normalized") or ""


def _usable(key: str) -> bool:
    # A bare number ("0", "2": a numbered choice) or nothing at all is not a question.
    return any(ch.isalpha() for ch in key)


def _toml_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _entry_file(matcher: Matcher | None, entry: Any) -> str:
    name = getattr(entry, "source_file", "") or f"{entry.id}.toml"
    directory = getattr(getattr(matcher, "kb", None), "directory", None)
    if directory is None:
        return f"knowledge/faq/{name}"
    path = Path(directory) / "faq" / name
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def alternate_snippet(file: str, faq_id: str, questions: list[str]) -> str:
    lines = [f"# {file} [{faq_id}]: add inside  alternates = [ ... ]"]
    lines += [f"  {_toml_str(q)}," for q in questions]
    return "\n".join(lines)


def new_entry_snippet(questions: list[str], nearest: dict[str, Any] | None = None) -> str:
    question = questions[0] if questions else ""
    lines = [
        "# new file knowledge/faq/NN_<id>.toml — fill in id, section and answer; at least 12 alternates",
    ]
    if nearest:
        lines.append(
            f"# nearest existing entry: {nearest['faq_id']} (section {nearest['section']}, "
            f"score {nearest['score']:.0f}) — {nearest['question']}"
        )
    lines += [
        'id = "..."  # 2-40 characters: a-z 0-9 _',
        "section = ?  # which section (0-13) of the source FAQ supports the answer? none = out of scope, no entry",
        f"question = {_toml_str(question)}",
        'answer = """待补充"""',
        "alternates = [",
        *[f"  {_toml_str(q)}," for q in questions],
        "]",
    ]
    return "\n".join(lines)


def gap_clusters(
    conn: sqlite3.Connection,
    matcher: Matcher | None,
    *,
    since: _dt.datetime | None = None,
    limit: int | None = 20,
    threshold: float = DEFAULT_SIMILARITY,
    alternate_threshold: float = DEFAULT_ALTERNATE_THRESHOLD,
) -> list[dict[str, Any]]:
    """The gap inbox, largest cluster first (ties: most recent first).

    Each cluster is a dict: ``count`` (turns), ``representative`` (its most frequent question), ``questions``
    (distinct questions with counts, most frequent first), ``examples`` (up to 8 of them), ``routes`` and
    ``reasons`` (counts), ``turn_ids`` (up to 20, newest first), ``first_seen``/``last_seen``, ``nearest``
    ({faq_id, section, score, question, file} or None), ``suggestion`` ('alternate' | 'new-entry') and
    ``snippet`` (TOML to paste). ``matcher`` may be None (no nearest entry, always a new-entry snippet).
    """
    normalizer = getattr(matcher, "normalizer", None)
    weights = _Weights(matcher)

    # 1. Group identical normalized questions, streaming: per question only counters and the newest turn ids are
    #    kept, so memory grows with the number of distinct questions, not with the number of turns.
    by_key: dict[str, _KeyStats] = {}
    normalized_cache: dict[str, str] = {}
    for r in queries.iter_gap_rows(conn, since=since, candidates=False):  # not needed here: skip the JSON
        key = (r.get("normalized") or "").strip()
        if not key and r.get("question") and normalizer is not None:
            q = r["question"]
            key = normalized_cache.get(q) or normalized_cache.setdefault(q, normalizer.normalize(q).text)
        if not _usable(key):
            continue
        ks = by_key.get(key)
        if ks is None:
            ks = by_key[key] = _KeyStats()
        ks.add(r)

    # 2. Greedy leader clustering, most frequent question first; a key joins the most similar cluster if any
    #    member is similar enough (members compared, not just the leader, so word order variants chain in).
    #    Only clusters sharing a bigram are compared (inverted index), and only with their first members.
    order = sorted(by_key, key=lambda k: (-by_key[k].count, _neg_ts(by_key[k].last)))
    clusters: list[dict[str, Any]] = []
    index: dict[str, set[int]] = {}
    for key in order:
        feats = _features(content_text(key)) or _features(key)
        total = weights.weight(feats)
        best, best_sim = None, threshold
        shared: set[int] = set()
        for f in feats:
            if len(f) == 2 and f in index:
                shared |= index[f]
        for ci in sorted(shared):
            for other, other_total in clusters[ci]["_feats"]:
                s = 2 * weights.weight(feats & other) / (total + other_total) if total + other_total else 0.0
                if s >= best_sim:
                    best, best_sim = ci, s
        if best is None:
            best = len(clusters)
            clusters.append({"_keys": [], "_feats": []})
        c = clusters[best]
        c["_keys"].append(key)
        if len(c["_feats"]) < MAX_COMPARED:
            c["_feats"].append((feats, total))
            for f in feats:
                if len(f) == 2:
                    index.setdefault(f, set()).add(best)

    # 3. Largest first (ties: most recent first); describe only the clusters kept.
    for c in clusters:
        c["_stats"] = _KeyStats.merge([by_key[k] for k in c["_keys"]])
    clusters.sort(key=lambda c: (-c["_stats"].count, _neg_ts(c["_stats"].last)))
    if limit is not None and limit > 0:
        clusters = clusters[:limit]
    phrase_texts = {p.text for p in getattr(matcher, "phrases", ())}
    out: list[dict[str, Any]] = []
    for c in clusters:
        st: _KeyStats = c["_stats"]
        q_counts = st.questions
        # Most frequent question; ties go to the most recent.
        questions = sorted(q_counts, key=lambda q: (-q_counts[q], _neg_ts("".join(st.question_last[q]))))
        representative = questions[0]
        rep_key = max(c["_keys"], key=lambda k: by_key[k].count)
        routes = st.routes
        reasons = st.reasons

        nearest = None
        if matcher is not None:
            ranked = matcher.rank(rep_key, limit=1)
            if ranked:
                top = ranked[0]
                nearest = {
                    "faq_id": top.entry.id,
                    "section": top.entry.section,
                    "score": round(top.score, 1),
                    "question": top.entry.question,
                    "file": _entry_file(matcher, top.entry),
                }
        # Questions already present verbatim (after normalization) as a phrase would be rejected by the loader;
        # questions with masked personal data ("[手机号]") are no wording to teach the matcher.
        new_phrases = [
            q
            for q in questions
            if not _has_placeholder(q) and (normalizer is None or normalizer.normalize(q).text not in phrase_texts)
        ]
        answered_here = nearest is not None and all(
            route == Route.FAQ and faq_id == nearest["faq_id"] for route, faq_id in st.route_faq
        )
        if nearest is not None and nearest["score"] >= alternate_threshold and not answered_here and new_phrases:
            suggestion = "alternate"
            snippet = alternate_snippet(nearest["file"], nearest["faq_id"], new_phrases)
            anchors = getattr(matcher, "anchors", ())
            if anchors and not any(a in rep_key for a in anchors):
                snippet = (
                    "# note: these questions name nothing of the FAQ's domain (e.g. 社保); even as alternates\n"
                    '# they get "did you mean" choices, not a direct answer (see [domain] anchors in terms.toml)\n'
                    + snippet
                )
        else:
            suggestion = "new-entry"
            snippet = new_entry_snippet(new_phrases or [rep_key], nearest)
            if answered_here:
                snippet = (
                    f"# answered directly from {nearest['faq_id']} ({nearest['file']}) but marked unhelpful:\n"
                    "# check that entry's answer first; if the question needs its own answer:\n" + snippet
                )
        out.append(
            {
                "count": st.count,
                "representative": representative,
                "questions": [{"question": q, "count": q_counts[q]} for q in questions],
                "examples": questions[:MAX_EXAMPLES],
                "routes": dict(routes.most_common()),
                "reasons": dict(reasons.most_common()),
                "turn_ids": [tid for _, tid in st.newest()],
                "first_seen": st.first,
                "last_seen": st.last,
                "nearest": nearest,
                "suggestion": suggestion,
                "snippet": snippet,
            }
        )
    return out


class _KeyStats:
    """What the inbox reports about the gap turns of one question (or, merged, one cluster), without the turns."""

    __slots__ = ("count", "first", "last", "questions", "question_last", "routes", "reasons", "route_faq", "_ids")

    def __init__(self) -> None:
        self.count = 0
        self.first = ""
        self.last = ""
        self.questions: Counter[str] = Counter()
        self.question_last: dict[str, tuple[str, str]] = {}
        self.routes: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.route_faq: set[tuple[str, str | None]] = set()
        self._ids: list[tuple[str, str]] = []  # (ts, turn id), the newest MAX_TURN_IDS, oldest first

    def add(self, r: dict[str, Any]) -> None:
        ts, tid = r["ts"], r["turn_id"]
        self.count += 1
        self.first = ts if not self.first or ts < self.first else self.first
        self.last = ts if ts > self.last else self.last
        q = _shown(r)
        self.questions[q] += 1
        if (ts, tid) > self.question_last.get(q, ("", "")):
            self.question_last[q] = (ts, tid)
        self.routes[r["route"]] += 1
        self.reasons.update(r["reasons"])
        self.route_faq.add((r["route"], r.get("faq_id")))
        self._ids.append((ts, tid))
        if len(self._ids) > 4 * MAX_TURN_IDS:
            self._ids = sorted(self._ids)[-MAX_TURN_IDS:]

    def newest(self) -> list[tuple[str, str]]:
        return sorted(self._ids, reverse=True)[:MAX_TURN_IDS]

    @classmethod
    def merge(cls, parts: list[_KeyStats]) -> _KeyStats:
        out = cls()
        for p in parts:
            out.count += p.count
            out.first = p.first if not out.first or (p.first and p.first < out.first) else out.first
            out.last = max(out.last, p.last)
            out.questions.update(p.questions)
            for q, when in p.question_last.items():
                if when > out.question_last.get(q, ("", "")):
                    out.question_last[q] = when
            out.routes.update(p.routes)
            out.reasons.update(p.reasons)
            out.route_faq |= p.route_faq
            out._ids.extend(p.newest())
        out._ids = sorted(out._ids)[-MAX_TURN_IDS:]
        return out


def _neg_ts(ts: str) -> tuple[int, ...]:
    # Sort key for "most recent first" within equal counts (timestamps are fixed-format ISO text).
    return tuple(-ord(ch) for ch in ts)
