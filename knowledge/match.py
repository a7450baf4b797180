"""Fuzzy matching of a normalized question against the curated phrases, and the routing decision.

Two signals per (question, phrase) pair, both on the normalized text (Chinese needs no segmenter for this):
  * shape: rapidfuzz's normalized Indel similarity of the two strings (order and length aware);
  * content: IDF-weighted overlap of character bigrams, as an F-measure of "how much of the question the phrase
    explains" and "how much of the phrase the question contains". Rare bigrams (亲情, 姓名, 新生) weigh more than
    ones every entry shares (社保, 保卡).
An entry scores as its best phrase. With many entries an inverted bigram index preselects candidates so the cost
stays near-flat as the knowledge base grows. Bigrams of question words (terms.toml [question_words]) weigh little.

Routing (`route`): a long question is scored as a whole and by its asking parts (`Normalized.asks`, one batch:
`rank_many`); then the safety rules (foreign terms, domain words, an entry's `requires`), the half-covered details
of partial.toml (`partial_aspect`: a line under the answer, or choices instead of a direct answer), and the
thresholds decide between faq, clarify and none.

`matcher_for(kb)` returns the Matcher of a knowledge base's content, built once (knowledge/built.py); routing
thresholds are arguments of `route`, not part of the index.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Literal

from rapidfuzz import fuzz, process

from knowledge.bigrams import bigram_set
from knowledge.built import BuiltPerContent
from knowledge.loader import Aspect, Entry, KnowledgeBase
from knowledge.normalize import Normalizer


@dataclass(frozen=True)
class Phrase:
    entry: int  # index into Matcher.entries
    text: str  # normalized
    grams: frozenset[str]
    weight: float  # sum of idf over grams
    canonical: bool


@dataclass(frozen=True)
class Scored:
    entry: Entry
    score: float  # 0-100
    phrase: str  # best matching normalized phrase
    query: str = ""  # the part of the question that scored it (the whole key, or one asking part)


@dataclass(frozen=True)
class Thresholds:
    direct: float = 50.0
    clarify: float = 40.0
    margin: float = 8.0
    related: float = 35.0
    # A clear leader: between `clarify` and `direct`, a top entry this far ahead of the best entry of another section
    # is answered directly. Real questions carry background that dilutes every score, so the absolute level says less
    # than the lead does; chosen on the project's own sets (tests/data), where it adds no wrong or off-topic answer.
    lead: float = 15.0


class MatchReason(enum.StrEnum):
    """Why matching routed a question as it did (the start of ``Reply.reason``; stored in ``turns.reason``)."""

    CONFIDENT = "confident"  # faq: clear score and lead, no safety rule against it
    CLOSE_CALL = "close-call"  # clarify: a direct-level score without the lead
    MIDDLING = "middling"  # clarify: between the clarify and direct thresholds
    LOW_SCORE = "low-score"  # none: below the clarify threshold
    NO_MATCH = "no-match"  # none: no candidate at all
    NO_DOMAIN_WORD = "no-domain-word"  # clarify: no word of the FAQ's domain
    NO_ENTRY_WORD = "no-entry-word"  # clarify: the entry's `requires` words are missing
    FOREIGN_TERM = "foreign-term"  # followed by ":<terms>": about an ID card, a passport... (terms.toml)
    PARTIAL = "partial"  # followed by ":<aspect id>": a detail the FAQ does not cover (partial.toml)

    def about(self, detail: str) -> str:
        """The compound form, e.g. ``foreign-term:身份证``."""
        return f"{self.value}:{detail}"


@dataclass(frozen=True)
class MatchResult:
    # The route's value (bot.answering.types.Route sits above this layer and compares equal to these strings).
    route: Literal["faq", "clarify", "none"]
    ranked: list[Scored]  # best first, up to 5
    reason: str  # a MatchReason, or its compound form (MatchReason.about)
    foreign: tuple[str, ...] = ()  # foreign terms in the question not covered by the best phrase
    anchored: bool = True  # the question names something of the FAQ's domain
    partial: Aspect | None = None  # a detail the FAQ does not cover (partial.toml), asked next to the matched entry

    @property
    def best(self) -> Scored | None:
        return self.ranked[0] if self.ranked else None


SHAPE_WEIGHT = 0.35  # the rest is the content overlap
# Content is an F-beta of precision (question explained) and recall (phrase present): people wrap a short FAQ
# question in long context ("俺老伴的社保卡找不着了，要带啥去补"), so covering the phrase matters more.
RECALL_BETA = 1.5
SHORT_QUERY = 4  # normalized characters
SHORT_CONTAINED = 0.55  # content credit for a short question contained in a phrase: enough for choices, not more
QUESTION_WORD_WEIGHT = 0.25  # share of its IDF a question-word bigram keeps
PRESELECT = 40  # entries kept by the inverted index before exact scoring


class Matcher:
    """The index of one knowledge base's phrases. Read-only once built (its lazy per-entry caches only ever store
    the same values), so one Matcher serves any number of answerers and threads: see `matcher_for`."""

    def __init__(self, kb: KnowledgeBase, normalizer: Normalizer | None = None):
        self.entries = kb.entries
        self.normalizer = normalizer or Normalizer(kb.terms)
        raw: list[tuple[int, str, bool]] = []
        for i, e in enumerate(self.entries):
            seen = set()
            for j, p in enumerate((e.question, *e.alternates)):
                t = self.normalizer.normalize(p).text
                if t and t not in seen:
                    seen.add(t)
                    raw.append((i, t, j == 0))
        # Document frequency over entries, not phrases: a bigram in every entry says nothing.
        df: dict[str, int] = {}
        entry_grams: list[set[str]] = [set() for _ in self.entries]
        for i, t, _ in raw:
            entry_grams[i] |= bigram_set(t)
        for gs in entry_grams:
            for g in gs:
                df[g] = df.get(g, 0) + 1
        n = max(len(self.entries), 1)
        self.idf = {g: math.log(1 + (n + 1) / (c + 0.5)) for g, c in df.items()}
        self.unknown_idf = math.log(1 + (n + 1) / 0.5)  # a bigram no entry has: maximally informative
        # Bigrams of question words (什么, 怎么办, 是什么原因) say how people ask, not what about: with few entries
        # their IDF is high by chance, and "社保卡要换卡是什么原因" would match "电子社保卡是什么" on them.
        for w in kb.terms.question_words:
            for g in bigram_set(self.normalizer.normalize(w).text):
                if len(g) == 2:
                    self.idf[g] = self.idf.get(g, self.unknown_idf) * QUESTION_WORD_WEIGHT
        self.phrases: list[Phrase] = []
        for i, t, canon in raw:
            gs = frozenset(bigram_set(t))
            self.phrases.append(Phrase(i, t, gs, sum(self.idf[g] for g in gs), canon))
        self._texts = [p.text for p in self.phrases]
        self._order = {e.id: i for i, e in enumerate(self.entries)}

        # Phrase-level inverted index, only for small knowledge bases (scored whole); large ones preselect entries.
        self._phrase_postings: dict[str, list[int]] = {}
        if len(self.entries) <= PRESELECT:
            for k, p in enumerate(self.phrases):
                for g in p.grams:
                    self._phrase_postings.setdefault(g, []).append(k)
        self.by_entry: list[list[Phrase]] = [[] for _ in self.entries]
        for p in self.phrases:
            self.by_entry[p.entry].append(p)
        self._entry_texts = [[p.text for p in ps] for ps in self.by_entry]
        # Bigram ids for the batch scoring of a large knowledge base (see rank_many); per-entry arrays made lazily.
        self._gram_ids = {g: k for k, g in enumerate(self.idf)}
        self._gram_arrays: list = [None] * len(self.entries)
        self._entry_weights = [[p.weight for p in ps] for ps in self.by_entry]
        # Vectorized scoring (see rank): an entry's phrases are contiguous in self.phrases, so an entry is a slice.
        import numpy as np  # here, not at import time: `faqbot --help` and friends do not pay for it

        self._np = np
        self._ranges: list[tuple[int, int]] = []
        start = 0
        for ps in self.by_entry:
            self._ranges.append((start, start + len(ps)))
            start += len(ps)
        self._pweight = np.array([p.weight for p in self.phrases], dtype=np.float64)
        self._postings_np = {g: np.array(post, dtype=np.intp) for g, post in self._phrase_postings.items()}
        # Inverted index gram -> entries, used only when the knowledge base is large.
        self.postings: dict[str, list[int]] = {}
        for i, gs in enumerate(entry_grams):
            for g in gs:
                self.postings.setdefault(g, []).append(i)
        # Words an entry needs in the question for a direct answer (`requires` in its file), normalized.
        self.requires = {
            e.id: tuple({self.normalizer.normalize(w).text for w in e.requires} - {""})
            for e in self.entries
            if e.requires
        }
        # Half-covered details, with their words normalized like the questions.
        self.aspects = [
            (
                a,
                tuple({self.normalizer.normalize(w).text for w in a.words} - {""}),
                tuple({self.normalizer.normalize(w).text for w in a.unless} - {""}),
            )
            for a in kb.aspects
        ]
        self._answers: dict[str, str] = {}
        self.anchors = tuple({self.normalizer.normalize(a).text for a in kb.terms.anchors} - {""})
        self.foreign = tuple(
            sorted({self.normalizer.normalize(f).text for f in kb.terms.foreign} - {""}, key=len, reverse=True)
        )

    # -- scoring -----------------------------------------------------------------------------------
    def _w(self, g: str) -> float:
        return self.idf.get(g, self.unknown_idf)

    def _combine(self, q: str, short: bool, shape: float, common_weight: float, qweight: float, p: Phrase) -> float:
        """Score (0-100) from the shape similarity (0-100) and the IDF weight of the bigrams shared with phrase `p`."""
        content = 0.0
        if common_weight:
            precision = common_weight / qweight  # share of the question explained by the phrase
            recall = common_weight / p.weight if p.weight else 0.0  # share of the phrase present in the question
            b2 = RECALL_BETA * RECALL_BETA
            content = (1 + b2) * precision * recall / (b2 * precision + recall)
        if short and content < SHORT_CONTAINED and q in p.text:
            # A bare keyword ("密码", "挂失") says little, but the entries that contain it are fair choices to offer.
            content = SHORT_CONTAINED
        # Clamped: float sums over sets (order varies with the hash seed) can land a hair above 100.
        return min(100.0, SHAPE_WEIGHT * shape + (1 - SHAPE_WEIGHT) * 100.0 * content)

    @staticmethod
    def _is_short(q: str) -> bool:
        return 2 <= len(q) <= SHORT_QUERY and not q.isascii()

    def phrase_score(self, q: str, qgrams: set[str], qweight: float, p: Phrase) -> float:
        """The score of one phrase (used by `knowledge check`; `rank` computes the same in bulk)."""
        common = sum(self.idf[g] for g in qgrams & p.grams)
        return self._combine(q, self._is_short(q), fuzz.ratio(q, p.text), common, qweight, p)

    def _candidate_entries(self, qgrams: set[str]) -> list[int] | None:
        """Entries worth scoring exactly; None means all (small knowledge bases)."""
        if len(self.entries) <= PRESELECT:
            return None
        acc: dict[int, float] = {}
        # Rarest grams first; once rarer grams found candidates, skip common grams (their IDF adds little, their
        # posting lists cost the most).
        n = len(self.entries)
        for g in sorted(qgrams, key=self._w, reverse=True):
            post = self.postings.get(g)
            if not post:
                continue
            if acc and (len(post) > n // 4 or (len(post) > n // 20 and len(acc) >= PRESELECT)):
                continue
            w = self.idf[g]
            for i in post:
                acc[i] = acc.get(i, 0.0) + w
        return sorted(acc, key=acc.__getitem__, reverse=True)[:PRESELECT]

    def rank(self, q: str, limit: int = 5, *, within: list[int] | None = None) -> list[Scored]:
        """Entries ranked by their best phrase for the normalized question `q`.

        The same arithmetic as `_combine`, on arrays: rapidfuzz scores the shapes of all phrases in one C call
        (`cdist`) and numpy combines them, instead of a Python loop over every phrase (~4x faster on the shipped
        FAQ; identical scores, see tests/knowledge/test_match.py). `within`: entries to score instead of the preselection
        (a large knowledge base scores the parts of a long question among the entries preselected for the whole).
        """
        if not q:
            return []
        np = self._np
        qgrams = bigram_set(q)
        idf = self.idf
        qweight = sum(self._w(g) for g in qgrams) or 1.0
        cand = self._candidate_entries(qgrams) if within is None or len(self.entries) <= PRESELECT else within
        if cand is None:
            ranges, texts, pweight = self._ranges, self._texts, self._pweight
            # Shared-bigram weight of every phrase at once, through the phrase-level inverted index (added gram by
            # gram in the same order as a per-phrase sum, so the floats come out the same).
            posts, weights = [], []
            for g in qgrams:
                post = self._postings_np.get(g)
                if post is not None:
                    posts.append(post)
                    weights.append(idf[g])
            if posts:
                common = np.bincount(
                    np.concatenate(posts), weights=np.repeat(weights, [len(p) for p in posts]), minlength=len(texts)
                )
            else:
                common = np.zeros(len(texts))
        else:
            ranges, texts, weights, commons = [], [], [], []
            for i in cand:
                ps = self.by_entry[i]
                ranges.append((len(texts), len(texts) + len(ps)))
                for p in ps:
                    texts.append(p.text)
                    weights.append(p.weight)
                    commons.append(sum(idf[g] for g in qgrams & p.grams))
            pweight, common = np.array(weights), np.array(commons)
            cand_entries = cand
        if not texts:
            return []
        shape = process.cdist([q], texts, scorer=fuzz.ratio, dtype=np.float64, workers=1)[0]
        entry_of = range(len(ranges)) if cand is None else cand_entries
        return self._best_entries(q, qweight, common, shape, texts, pweight, ranges, entry_of, limit)

    def _best_entries(self, q, qweight, common, shape, texts, pweight, ranges, entry_of, limit) -> list[Scored]:
        """Scores of phrases (shared-bigram weight `common`, `shape` similarity) -> best entries, best first."""
        np = self._np
        b2 = RECALL_BETA * RECALL_BETA
        precision = common / qweight
        recall = common / pweight  # a phrase's weight is > 0: every idf is
        den = b2 * precision + recall  # 0 exactly where no bigram is shared: content 0 there
        content = np.divide((1 + b2) * precision * recall, den, out=np.zeros_like(den), where=den != 0)
        if self._is_short(q):
            for k in np.flatnonzero(content < SHORT_CONTAINED):
                if q in texts[k]:
                    content[k] = SHORT_CONTAINED
        score = SHAPE_WEIGHT * shape + (1 - SHAPE_WEIGHT) * 100.0 * content
        # Best score per entry in one call; the best phrase's text only for the entries returned.
        used = [(n, a, b) for n, (a, b) in enumerate(ranges) if a < b]
        tops = np.maximum.reduceat(score, [a for _, a, _ in used]).tolist()
        # Clamped: float sums over sets (order varies with the hash seed) can land a hair above 100.
        best = sorted(
            ((min(100.0, sc), entry_of[n], a, b) for (n, a, b), sc in zip(used, tops, strict=False) if sc > 0),
            key=lambda x: (-x[0], x[1]),
        )
        out = []
        for sc, e, a, b in best[:limit]:
            k = a + int(score[a:b].argmax())  # the first best phrase, as a loop with `>` would keep
            out.append(Scored(self.entries[e], sc, texts[k]))
        return out

    def _entry_gram_arrays(self, i: int):
        """(phrase index within the entry, bigram id) pairs of entry `i`'s phrases, made on first use and kept."""
        cached = self._gram_arrays[i]
        if cached is None:
            np = self._np
            ps = self.by_entry[i]
            ids = [[self._gram_ids[g] for g in p.grams] for p in ps]
            # int32: at 10,000 entries all of them together take ~17 MB, built only as entries come up.
            cached = (
                np.repeat(np.arange(len(ps), dtype=np.int32), [len(x) for x in ids]),
                np.array([g for x in ids for g in x], dtype=np.int32),
            )
            self._gram_arrays[i] = cached
        return cached

    def rank_many(self, queries: list[str], limit: int = 5, *, within: list[int] | None = None) -> list[list[Scored]]:
        """`rank` for several normalized queries at once (the asking parts of one question): one shape call for all,
        and on a large knowledge base one pass over the entries `within` (or those preselected for the first
        query) that finds which query bigrams each phrase has, instead of one pass per query."""
        if not queries:
            return []
        np = self._np
        idf = self.idf
        qgrams = [bigram_set(q) for q in queries]
        qweights = [sum(self._w(g) for g in gs) or 1.0 for gs in qgrams]
        if len(self.entries) <= PRESELECT:
            texts, pweight, ranges, entry_of = self._texts, self._pweight, self._ranges, range(len(self._ranges))
            commons = []
            for gs in qgrams:
                posts = [self._postings_np[g] for g in gs if g in self._postings_np]
                if posts:
                    w = np.repeat([idf[g] for g in gs if g in self._postings_np], [len(p) for p in posts])
                    commons.append(np.bincount(np.concatenate(posts), weights=w, minlength=len(texts)))
                else:
                    commons.append(np.zeros(len(texts)))
        else:
            cand = within if within is not None else self._candidate_entries(qgrams[0])
            union = sorted(set().union(*qgrams) & idf.keys())
            texts, weights, ranges, rows, gids = [], [], [], [], []
            for i in cand:
                ps = self.by_entry[i]
                ranges.append((len(texts), len(texts) + len(ps)))
                local_rows, local_gids = self._entry_gram_arrays(i)
                rows.append(local_rows + len(texts))
                gids.append(local_gids)
                texts += self._entry_texts[i]
                weights += self._entry_weights[i]
            if not texts:
                return [[] for _ in queries]
            # Which query bigrams each phrase has (phrases x bigrams), from the entries' (phrase, bigram id) pairs,
            # times each query's IDF weights: arrays only, no Python loop over the phrases.
            colmap = np.full(len(self._gram_ids), -1, dtype=np.int64)
            colmap[[self._gram_ids[g] for g in union]] = np.arange(len(union))
            rows_a, cols_a = np.concatenate(rows), colmap[np.concatenate(gids)]
            hit = cols_a >= 0
            present = np.zeros((len(texts), len(union)))
            present[rows_a[hit], cols_a[hit]] = 1.0
            col = {g: j for j, g in enumerate(union)}
            qmat = np.zeros((len(union), len(queries)))
            for j, gs in enumerate(qgrams):
                for g in gs:
                    if g in col:
                        qmat[col[g], j] = idf[g]
            common_all = present @ qmat
            commons = [common_all[:, j] for j in range(len(queries))]
            pweight, entry_of = np.array(weights), cand
        shapes = process.cdist(queries, texts, scorer=fuzz.ratio, dtype=np.float64, workers=1)
        return [
            self._best_entries(q, w, c, shapes[j], texts, pweight, ranges, entry_of, limit)
            for j, (q, w, c) in enumerate(zip(queries, qweights, commons, strict=False))
        ]

    # -- routing ----------------------------------------------------------------------------------
    def partial_aspect(self, q: str, entry: Entry, mode: str | None = None) -> Aspect | None:
        """The first half-covered detail (partial.toml) the normalized question `q` asks about next to `entry`."""
        for aspect, words, unless in self.aspects:
            if (mode and aspect.mode != mode) or (aspect.entries and entry.id not in aspect.entries):
                continue
            said = [w for w in words if w in q]
            if not said or any(u in q for u in unless):
                continue
            # The entry's own answer speaks of it ("申领电子社保卡跟激活银行金融账户无关"): not a gap of the FAQ here.
            if all(w in self._answer_text(entry) for w in said):
                continue
            return aspect
        return None

    def _names_a_card(self, q: str) -> bool:
        """Whether `q` says 卡 outside the foreign terms it names (银行卡, 公交卡 ... are not our card)."""
        for f in self.foreign:  # longest first
            q = q.replace(f, " ")
        return "卡" in q

    def _answer_text(self, entry: Entry) -> str:
        """An entry's answer, normalized like the questions (made on first use and kept)."""
        text = self._answers.get(entry.id)
        if text is None:
            text = self._answers[entry.id] = self.normalizer.normalize(entry.answer).text
        return text

    def rank_parts(
        self,
        q: str,
        asks: tuple[tuple[str, float], ...] = (),
        limit: int = 5,
        trust_whole: float = 101.0,
        near: float = 8.0,
        whole: list[Scored] | None = None,
    ) -> list[Scored]:
        """Entries ranked by their best score over the whole key `q` and its asking parts `asks` ((key, factor)).

        A part cut loose from the segment before it (factor < 1) drops words the question may need ("可以不办实体卡，
        只领电子社保卡吗"): when the whole already scores `trust_whole` or more, such a part may only raise entries
        the whole scores within `near` of its best.
        """
        if whole is None:  # the whole and its parts in one pass
            whole, *parts = self.rank_many([q, *(a for a, _ in asks)], limit)
        else:  # the whole was scored already: its parts among the same entries
            parts = self.rank_many([a for a, _ in asks], limit, within=self._candidate_entries(bigram_set(q)))
        best: dict[str, Scored] = {s.entry.id: Scored(s.entry, s.score, s.phrase, q) for s in whole}
        confident = bool(whole) and whole[0].score >= trust_whole
        allowed = {s.entry.id for s in whole if whole[0].score - s.score <= near}
        for (part, factor), scored in zip(asks, parts, strict=False):
            for s in scored:
                if factor < 1.0 and confident and s.entry.id not in allowed:
                    continue
                s = Scored(s.entry, s.score * factor, s.phrase, part)
                old = best.get(s.entry.id)
                if old is None or s.score > old.score:
                    best[s.entry.id] = s
        order = self._order
        return sorted(best.values(), key=lambda s: (-s.score, order[s.entry.id]))[:limit]

    def other_matter(self, matters: tuple[str, ...], answered: Entry, th: Thresholds) -> Entry | None:
        """For a message of several matters ("……，另外……") answered by `answered`: the entry a later or earlier matter
        asks about, when that matter on its own points to another section at least at the related level."""
        for ranked in self.rank_many(list(matters), 1):
            if ranked and ranked[0].entry.section != answered.section and ranked[0].score >= th.related:
                if not any(s.entry.id == answered.id for s in ranked):
                    return ranked[0].entry
        return None

    def route(self, q: str, th: Thresholds, asks: tuple[tuple[str, float], ...] = ()) -> MatchResult:
        if asks:
            ranked = self.rank_parts(q, asks, trust_whole=th.clarify, near=th.margin)
        else:
            ranked = self.rank_many([q])[0]  # = rank(q) (tested), with the array path on large knowledge bases
        if not ranked:
            return MatchResult("none", [], MatchReason.NO_MATCH)
        top = ranked[0]
        # A question about an ID card, a credit card, a passport... is not about the social security card,
        # however alike the wording: no direct answer unless the matched phrasing itself names that thing.
        # Checked on the part of the question that scored the entry (background may name an ID card in passing).
        asked = top.query or q
        foreign = tuple(f for f in self.foreign if f in asked and f not in top.phrase)
        # Without a word of the domain ("微信密码忘了") the same wording may be about another account or card. An entry
        # with `requires` needs one of its own words too when the matched phrasing has one ("第一次办社保卡" matched
        # "宝宝第一次办社保卡" but is not about a newborn's card); a phrasing without them was put there on purpose.
        anchored = not self.anchors or any(a in q for a in self.anchors)
        needs = self.requires.get(top.entry.id)
        lacks_entry_word = bool(needs) and any(w in top.phrase for w in needs) and not any(w in q for w in needs)
        second = next((s for s in ranked[1:] if s.entry.section != top.entry.section), None)
        gap = top.score - (second.score if second else 0.0)
        # Details the FAQ does not cover (partial.toml). Those that withhold a direct answer are looked for in the part
        # of the question that was matched (background such as "我把银行卡冻结了" is not what is asked); those that
        # only add a line under the answer, anywhere ("……后来找到了，但是已经挂失了，现在该怎么办").
        partial = self.partial_aspect(asked, top.entry)
        if partial is None or partial.mode != "offer":
            partial = self.partial_aspect(q, top.entry, mode="answer") or partial
        if (
            partial is not None
            and partial.mode == "offer"
            and (top.score >= th.related or (not partial.entries and anchored))
        ):
            # Tied to named entries: offer them. A detail of no entry (activating the physical card): say so only.
            route = "clarify" if partial.entries else "none"
            return MatchResult(route, ranked, MatchReason.PARTIAL.about(partial.id), foreign, anchored, partial)
        # A curated detail word of the entry ("解除挂失" for 挂失补办) is evidence enough at the clarify level.
        direct = th.clarify if partial is not None and partial.entries else th.direct
        clear = top.score >= direct and gap >= th.margin or top.score >= th.clarify and gap >= th.lead
        if clear and not foreign and anchored and not lacks_entry_word:
            return MatchResult("faq", ranked, MatchReason.CONFIDENT, foreign, anchored, partial)
        if foreign and not anchored and not self._names_a_card(q):
            # About the other thing, not about the social security card at all ("身份证丢了怎么补办"): the FAQ's entries
            # are no choices for it; say it is not covered. A card named besides it ("孩子的卡丢了，补办要户口簿吗")
            # may be ours: choices as before.
            return MatchResult("none", ranked, MatchReason.FOREIGN_TERM.about(",".join(foreign)), foreign, anchored)
        if top.score >= th.clarify:
            if foreign:
                reason = MatchReason.FOREIGN_TERM.about(",".join(foreign))
            elif not anchored and top.score >= th.direct:
                reason = MatchReason.NO_DOMAIN_WORD
            elif lacks_entry_word and top.score >= th.direct:
                reason = MatchReason.NO_ENTRY_WORD
            else:
                reason = MatchReason.CLOSE_CALL if top.score >= th.direct else MatchReason.MIDDLING
            return MatchResult("clarify", ranked, reason, foreign, anchored)
        return MatchResult("none", ranked, MatchReason.LOW_SCORE, foreign, anchored)


matcher_for: BuiltPerContent[Matcher] = BuiltPerContent(Matcher)
"""The Matcher of a knowledge base's content, built once (knowledge/built.py)."""
