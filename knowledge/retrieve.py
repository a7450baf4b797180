"""Top-k entries for the LLM context: BM25 over character bigrams, fused with the fuzzy matcher's ranking.

Each entry is one BM25 document made of its question, alternates and answer, normalized like the users'
questions (so synonyms and typos line up) and cut into character bigrams (Chinese needs no segmenter for this).
The BM25 ranking and `Matcher.rank()` are combined by reciprocal-rank fusion: the matcher knows the curated
phrasings, BM25 also sees the answer text ("掌上12333", "户口簿") that a question may name instead.

Small and dependency-free on purpose: the knowledge base has tens of entries, a query costs well under 1 ms.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from knowledge.bigrams import bigrams
from knowledge.built import BuiltPerContent
from knowledge.loader import Entry, KnowledgeBase
from knowledge.match import Matcher, matcher_for

K1 = 1.2
B = 0.75
RRF_K = 10  # small: with a few dozen documents the top ranks must dominate
MATCHER_WEIGHT = 1.0
BM25_WEIGHT = 1.0

_PIECES_RE = re.compile(r"[\n。！？；;!?]+")


@dataclass(frozen=True)
class _Doc:
    entry: Entry
    tf: dict[str, int]
    length: int


class Retriever:
    def __init__(self, kb: KnowledgeBase, matcher: Matcher | None = None):
        self.kb = kb
        self.matcher = matcher or Matcher(kb)
        norm = self.matcher.normalizer
        docs: list[_Doc] = []
        for e in kb.entries:
            counts: Counter[str] = Counter()
            # Phrases one by one, so no bigram spans two of them; the answer sentence by sentence.
            for phrase in (e.question, *e.alternates, *_PIECES_RE.split(e.answer)):
                t = norm.normalize(phrase).text
                counts.update(bigrams(t))
            docs.append(_Doc(e, dict(counts), sum(counts.values())))
        self.docs = docs
        n = len(docs)
        self.avgdl = (sum(d.length for d in docs) / n) if n else 0.0
        df: Counter[str] = Counter()
        for d in docs:
            df.update(d.tf.keys())
        # BM25+ style idf that never goes negative (a bigram in every entry weighs ~0, not less).
        self.idf = {g: math.log(1 + (n - c + 0.5) / (c + 0.5)) for g, c in df.items()}

    def bm25(self, normalized_query: str) -> list[tuple[Entry, float]]:
        """Entries with a positive BM25 score, best first."""
        terms = set(bigrams(normalized_query))
        out: list[tuple[Entry, float]] = []
        for d in self.docs:
            s = 0.0
            norm_len = K1 * (1 - B + B * d.length / self.avgdl) if self.avgdl else K1
            for g in terms:
                f = d.tf.get(g)
                if f:
                    s += self.idf[g] * f * (K1 + 1) / (f + norm_len)
            if s > 0:
                out.append((d.entry, s))
        out.sort(key=lambda x: x[1], reverse=True)
        return out

    def ranked(self, normalized_query: str, matcher_ids: Sequence[str] | None = None) -> list[tuple[Entry, float]]:
        """Every entry with a fused score (reciprocal-rank fusion of BM25 and the matcher), best first.

        `matcher_ids`: the matcher's ranking when the caller already has it (the core's `Reply.candidates`), so the
        question is not scored twice; by default `Matcher.rank()` is called.
        """
        if not normalized_query:
            return []
        fused: dict[str, float] = {}
        by_id: dict[str, Entry] = {}
        for rank, (e, _) in enumerate(self.bm25(normalized_query)):
            fused[e.id] = fused.get(e.id, 0.0) + BM25_WEIGHT / (RRF_K + rank + 1)
            by_id[e.id] = e
        if matcher_ids is None:
            ranking = [s.entry for s in self.matcher.rank(normalized_query, limit=len(self.kb.entries))]
        else:
            ranking = [e for e in map(self.kb.get, matcher_ids) if e is not None]
        for rank, e in enumerate(ranking):
            fused[e.id] = fused.get(e.id, 0.0) + MATCHER_WEIGHT / (RRF_K + rank + 1)
            by_id[e.id] = e
        order = sorted(fused, key=lambda i: (-fused[i], by_id[i].section))
        return [(by_id[i], fused[i]) for i in order]

    def retrieve(self, normalized_query: str, k: int, matcher_ids: Sequence[str] | None = None) -> list[Entry]:
        """The top `k` entries for a normalized question (the matcher's normalization), best first."""
        if k <= 0:
            return []
        return [e for e, _ in self.ranked(normalized_query, matcher_ids)[:k]]


retriever_for: BuiltPerContent[Retriever] = BuiltPerContent(lambda kb: Retriever(kb, matcher_for(kb)))
"""The Retriever of a knowledge base's content (on its shared Matcher), built once (knowledge/built.py)."""
