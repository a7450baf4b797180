"""Normalization shared by the curated phrases and the users' questions, so both sides look alike.

Steps: NFKC (full-width -> half-width), drop control / zero-width / emoji characters, Traditional -> Simplified
(OpenCC), lower case, split into segments at punctuation and into clauses at spaces, strip greetings, lead-ins and
fillers at clause edges and particles at clause ends, rewrite domain synonyms and typos to one canonical term and
then phrase-level paraphrases (`paraphrases.toml`, some only when the segment names a given word), join without
spaces.

Real questions often carry background before the question ("我今天去药店买药，结果被告知……，该怎么办？"). Besides
the whole key, `Normalized.asks` holds the keys of the *asking parts*: the sentences that ask something (a question
mark or a question word such as 吗 / 怎么 / 如何 / 哪), and inside such a sentence the asking segment together with the
segment before it (which usually names the topic: "手里有两张社保卡，怎么办"). The matcher scores the whole and each
asking part, so background sentences cannot drown the question. A segment opening with a connector such as 另外 /
顺便问一下 / 还有就是 starts another matter: the matter before it counts as asked too (people state a problem without a
question word, then ask a second thing), so two matters in one message are both scored on their own.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from knowledge.loader import Terms

# Categories dropped outright: controls, format (zero-width, bidi marks), private use, surrogates, unassigned,
# symbols that are mostly emoji/dingbats, and combining marks (variation selectors, keycaps).
_DROP_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "So", "Sk", "Mn", "Me"}
_SPLIT_RE = re.compile(r"[\s\W_]+", re.UNICODE)  # punctuation and whitespace separate clauses
# Segments end at punctuation (after NFKC: ，->, ？->? ！->! ；->; ：->:); a sentence ends at a strong mark.
_SEGMENT_RE = re.compile(r"([,，、。?!;:：…\n]+)")
_SENTENCE_END = set("。?!;\n…")
# Words that make a clause a question. Chinese questions rarely need the question mark; these mark the ask.
_ASK_RE = re.compile(
    r"吗|么|如何|哪|啥|咋|几|多久|多少|是否|能否|可否|可不可以|能不能|要不要|会不会|有没有|是不是|怎样|为何|为什么"
    r"|办法|流程|手续|步骤|原因|区别|\?"
)
_PLACE_SUFFIX = "特别行政区|自治区|地区|省|市"
PART_WEIGHT = 0.95  # score factor of an asking part cut loose from the segment before it
MAX_ASKS = 5  # asking parts scored besides the whole question (each one costs a ranking pass)
MIN_ASK_CHARS = 5  # a shorter asking part ("怎么办") says too little on its own
# A segment opening with one of these starts another matter ("……，另外我还想把手机号改一下，该怎么弄？"): the sentence
# before it ends there, so its asking part is looked for on its own, and the connector itself is dropped.
# 另外 before an act means "separately" ("……，另外再办一张吗"), not another matter.
_SHIFT_RE = re.compile(
    r"^(?:另外(?![再办收交缴])|此外|再就是|还有就是|还有个问题|还有一个问题|顺便问一?下|顺便|其次|二是|其二|第二个?问题)"
)


@lru_cache(maxsize=1)
def _t2s():
    import opencc  # ~25 ms to build; only paid by the first question

    return opencc.OpenCC("t2s")


@lru_cache(maxsize=1)
def _s2t():
    import opencc

    return opencc.OpenCC("s2tw")  # Taiwan standard forms (為, 裡) read more naturally than OpenCC's own


# OpenCC reads 明了 as the word 明瞭 ("clear") wherever its segmentation joins the two ("只说明了电子社保卡…" ->
# "只說明瞭電子社保卡…"); in the bot's replies 明了 is always 说明 / 写明 / 注明 followed by the particle 了.
_S2T_FIXES = (("明瞭", "明了"),)


def to_traditional(text: str) -> str:
    out = _s2t().convert(text)
    for wrong, right in _S2T_FIXES:
        out = out.replace(wrong, right)
    return out


def to_simplified(text: str) -> str:
    return _t2s().convert(text)


def clean(text: str) -> str:
    """NFKC plus removal of invisible, control and emoji characters. Keeps punctuation and spaces."""
    text = unicodedata.normalize("NFKC", text)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in _DROP_CATEGORIES:
            if ch in "\n\t\r":
                out.append(" ")
            continue
        out.append(ch)
    return "".join(out)


def looks_traditional(original: str, simplified: str) -> bool:
    """True when OpenCC changed enough characters to call the text Traditional (one stray variant is not enough)."""
    changed = sum(1 for a, b in zip(original, simplified, strict=False) if a != b)
    han = sum(1 for ch in original if "\u4e00" <= ch <= "\u9fff")
    return changed >= 2 or (changed == 1 and han <= 8)


def _literals_re(words) -> re.Pattern | None:
    """One regex for many literal words, longest first. The lookahead on their first characters lets the engine
    skip most positions of a long message at once instead of trying every word there."""
    words = sorted(set(words), key=len, reverse=True)
    if not words:
        return None
    first = "".join(sorted({w[0] for w in words}))
    return re.compile(f"(?=[{re.escape(first)}])(?:{'|'.join(map(re.escape, words))})")


@dataclass(frozen=True)
class Normalized:
    text: str  # the matching key: no spaces or punctuation
    traditional: bool = False
    cleaned: str = ""  # the question after clean(), for display / the LLM
    asks: tuple[tuple[str, float], ...] = ()  # (key, score factor) of the asking parts of a longer question
    places: tuple[str, ...] = ()  # places outside Hebei the question names, in order ("长沙")
    elsewhere: bool = False  # the question names a place outside Hebei or says "外地", "我们省"...
    matters: tuple[str, ...] = ()  # keys of the matters of a message that opens another one ("另外…"), in order


def _keep_inside(m: re.Match, canon: str, text: str) -> str:
    """The replacement for variant match `m`, unless the match lies within an occurrence of `canon` already in `text`
    ("申领一个" holds the variant "领一个" of 申领: rewriting it would give "申申领")."""
    start, end = m.span()
    k = text.find(canon, max(0, start - len(canon) + 1))
    while k != -1 and k < end:
        if k < end and k + len(canon) > start:
            return m.group(0)
        k = text.find(canon, k + 1)
    return canon


class Normalizer:
    def __init__(self, terms: Terms):
        self.terms = terms
        greetings = sorted({g.lower() for g in terms.greetings}, key=len, reverse=True)
        self._greet_re = (
            re.compile(
                "^(?:" + "|".join(map(re.escape, greetings)) + ")+|(?:" + "|".join(map(re.escape, greetings)) + ")+$"
            )
            if greetings
            else None
        )
        self._greet_first = {g[0] for g in greetings}
        self._greet_last = {g[-1] for g in greetings}
        self._particles = {p for p in terms.particles if len(p) == 1}
        particles = "".join(re.escape(p) for p in terms.particles if len(p) == 1)
        self._particle_re = re.compile(f"[{particles}]+$") if particles else None
        pairs: dict[str, str] = {}
        for canon, variants in terms.synonyms.items():
            for v in variants:
                pairs[v.lower()] = canon
        self._syn = pairs
        # Places outside Hebei: found (for the "local rules may differ" note) and left out of the matching key.
        pl = terms.places
        names = sorted({n.lower() for n in pl.other}, key=len, reverse=True)
        suffixed = sorted({n.lower() for n in pl.need_suffix}, key=len, reverse=True)
        alts = [f"(?:{'|'.join(map(re.escape, names))})(?:{_PLACE_SUFFIX})?的?"] if names else []
        if suffixed:
            alts.append(f"(?:{'|'.join(map(re.escape, suffixed))})(?:{_PLACE_SUFFIX})的?")
        # Hebei's names are matched too, so that "河北省" is never read as a place elsewhere and "石家庄" stays.
        home = sorted({n.lower() for n in pl.home}, key=len, reverse=True)
        self._home = set(home)
        if home:
            alts.insert(0, f"(?:{'|'.join(map(re.escape, home))})(?:{_PLACE_SUFFIX})?")
        # The lookahead on the names' first characters lets the regex skip most positions at once (an alternation of
        # ~400 names tried at every character of a long message costs ~0.4 ms; with it, ~0.03 ms).
        first = "".join(sorted({n[0] for n in (*names, *suffixed, *home)}))
        self._place_re = re.compile(f"(?=[{re.escape(first)}])(?:{'|'.join(alts)})") if alts else None
        self._elsewhere_re = (
            re.compile("|".join(map(re.escape, sorted(pl.elsewhere, key=len, reverse=True)))) if pl.elsewhere else None
        )
        self._syn_re = _literals_re(pairs)
        # Paraphrase rules, in file order: (pattern, replacement, words one of which the segment must name,
        # words none of which it may name). Conditions are checked on the segment after the earlier rewrites.
        self._rules: list[tuple[re.Pattern, str, tuple[str, ...], tuple[str, ...]]] = []
        for rule in terms.paraphrases:
            variants = sorted({self._syn_sub(v.lower()) for v in rule.variants} - {""}, key=len, reverse=True)
            if variants:
                self._rules.append(
                    (
                        re.compile("|".join(map(re.escape, variants))),
                        rule.canonical,
                        tuple(self._syn_sub(w.lower()) for w in rule.when),
                        tuple(self._syn_sub(w.lower()) for w in rule.unless),
                    )
                )
        self._any_rule_re = _literals_re(
            v for rule in terms.paraphrases for v in {self._syn_sub(x.lower()) for x in rule.variants} - {""}
        )

    def _syn_sub(self, text: str) -> str:
        if self._syn_re is None:
            return text
        return self._syn_re.sub(lambda m: self._syn[m.group(0)], text)

    def _rewrite(self, seg: str, message: str = "", cache: dict | None = None) -> str:
        """Synonyms, then the paraphrase rules on one segment. `when` may be met anywhere in the `message` (the
        context words are often in another clause: "……刷脸老是不成功，是不是我老了长得不像了"); `unless` only in
        the segment itself."""
        seg = self._syn_sub(seg)
        if self._any_rule_re is None or self._any_rule_re.search(seg) is None:
            return seg  # most segments of a long message name no paraphrase: one search instead of one per rule
        cache = {} if cache is None else cache  # the message with synonyms applied, made once per message
        for pattern, canon, when, unless in self._rules:
            if when and not any(w in seg for w in when):
                if "context" not in cache:
                    cache["context"] = self._syn_sub(message)
                # Earlier segments as rewritten: a paraphrase there may have named the word ("手机上的社保卡").
                if not any(w in cache["context"] or w in cache.get("done", "") for w in when):
                    continue
            if unless and any(w in seg for w in unless):
                continue
            seg = pattern.sub(lambda m, c=canon, t=seg: _keep_inside(m, c, t), seg)
        return seg

    def _clause(self, clause: str) -> str:
        prev = None
        while clause and clause != prev:
            prev = clause
            # The regexes only when a greeting or particle could be at an edge (most clauses of a long message
            # have none: a set lookup instead of two regex passes each).
            if self._greet_re is not None and (clause[0] in self._greet_first or clause[-1] in self._greet_last):
                clause = self._greet_re.sub("", clause)
            if clause and self._particle_re is not None and clause[-1] in self._particles:
                clause = self._particle_re.sub("", clause)
        return clause

    def normalize(self, text: str, *, max_chars: int | None = None) -> Normalized:
        cleaned = clean(text or "")
        if max_chars is not None:
            cleaned = cleaned[:max_chars]
        if any("\u4e00" <= ch <= "\u9fff" for ch in cleaned):
            simplified = to_simplified(cleaned)
            traditional = looks_traditional(cleaned, simplified)
        else:
            simplified, traditional = cleaned, False
        lowered = simplified.lower()
        places: list[str] = []
        if self._place_re is not None:
            lowered = self._place_re.sub(lambda m: self._place(m, places), lowered)
        elsewhere = bool(places) or (self._elsewhere_re is not None and self._elsewhere_re.search(lowered) is not None)
        # (key, asks, ends a sentence) per segment; the parts between the marks alternate with the marks.
        pieces = _SEGMENT_RE.split(lowered)
        segments: list[tuple[str, bool, bool]] = []
        starts: list[int] = []  # index in `segments` where another matter starts
        context: dict[str, str] = {}
        for k in range(0, len(pieces), 2):
            raw = pieces[k]
            mark = pieces[k + 1] if k + 1 < len(pieces) else "。"
            shift = _SHIFT_RE.match(raw.lstrip())
            if shift is not None:
                raw = raw.lstrip()[shift.end() :]
                starts.append(len(segments))
                if segments:  # what came before is a matter of its own: asked too, even without a question word
                    k0, _, _ = segments[-1]
                    segments[-1] = (k0, True, True)
            key = "".join(c for c in (self._clause(c) for c in _SPLIT_RE.split(raw) if c) if c)
            if key:
                key = self._rewrite(key, lowered, context)
                context["done"] = context.get("done", "") + key
            asks = bool(_ASK_RE.search(raw)) or "?" in mark
            ends = any(ch in _SENTENCE_END for ch in mark)
            if key:
                segments.append((key, asks, ends))
            elif ends and segments:  # a mark after an empty segment still ends the sentence
                k0, a0, _ = segments[-1]
                segments[-1] = (k0, a0 or "?" in mark, True)
        joined = "".join(k for k, _, _ in segments)
        bounds = sorted({0, *starts, len(segments)})
        matters = tuple(
            m for m in ("".join(k for k, _, _ in segments[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)) if m
        )
        return Normalized(
            text=joined,
            traditional=traditional,
            cleaned=cleaned.strip(),
            asks=self._asking_parts(segments, joined),
            places=tuple(places),
            elsewhere=elsewhere,
            matters=matters if len(matters) > 1 else (),
        )

    def _place(self, m: re.Match, found: list[str]) -> str:
        """A Hebei name stays in the text; another place is recorded (without 市/省) and removed."""
        name = m.group(0).removesuffix("的")
        for suffix in _PLACE_SUFFIX.split("|"):
            if name.endswith(suffix) and len(name) > len(suffix) + 1:
                name = name[: -len(suffix)]
                break
        if name in self._home or name.removesuffix("的") in self._home:
            return m.group(0)
        if name not in found:
            found.append(name)
        return " "

    @staticmethod
    def _asking_parts(segments: list[tuple[str, bool, bool]], whole: str) -> tuple[tuple[str, float], ...]:
        """(key, weight) of the parts of a longer question that ask something; see the module docstring."""
        if len(segments) < 2:
            return ()
        sentences: list[list[tuple[str, bool]]] = [[]]
        for key, asks, ends in segments:
            sentences[-1].append((key, asks))
            if ends:
                sentences.append([])
        sentences = [s for s in sentences if s]
        out: dict[str, float] = {}

        def add(key: str, weight: float = 1.0) -> None:
            if len(key) >= MIN_ASK_CHARS and key != whole and key not in out:
                out[key] = weight

        asking = [s for s in sentences if any(a for _, a in s)]
        if not asking:
            return ()
        # The first asking sentence usually states the question; a later one often restates it with detail.
        if len(sentences) > 1:
            add("".join(k for k, _ in asking[0]))
            add("".join(k for k, _ in asking[-1]))
        for sent in (asking[-1], asking[0]) if len(asking) > 1 else (asking[0],):
            if len(sent) < 2:
                continue
            last = max(i for i, (_, a) in enumerate(sent) if a)
            ask = sent[last][0]
            if last > 0:
                add(sent[last - 1][0] + ask)  # the segment before usually names the topic
                # The asking segment alone ("……，两张社保卡到底用哪张？"), or with the sentence's first segment,
                # drops words the question may need ("可以不办实体卡，只领电子社保卡吗"): weighed a little less.
                add(ask, PART_WEIGHT)
                if last > 1:
                    add(sent[0][0] + ask, PART_WEIGHT)
        return tuple(out.items())[:MAX_ASKS]
