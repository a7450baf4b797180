"""Normalization shared by the curated phrases and the users' questions, so both sides look alike.

Steps: NFKC (full-width -> half-width), drop control / zero-width / emoji characters, Traditional -> Simplified
(OpenCC), lower case, split into clauses at punctuation and spaces, strip greetings and fillers at clause edges and
particles at clause ends, rewrite domain synonyms and typos to one canonical term, join without spaces.
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


@lru_cache(maxsize=1)
def _t2s():
    import opencc  # ~25 ms to build; only paid by the first question

    return opencc.OpenCC("t2s")


@lru_cache(maxsize=1)
def _s2t():
    import opencc

    return opencc.OpenCC("s2tw")  # Taiwan standard forms (為, 裡) read more naturally than OpenCC's own


def to_traditional(text: str) -> str:
    return _s2t().convert(text)


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
    changed = sum(1 for a, b in zip(original, simplified) if a != b)
    han = sum(1 for ch in original if "\u4e00" <= ch <= "\u9fff")
    return changed >= 2 or (changed == 1 and han <= 8)


@dataclass(frozen=True)
class Normalized:
    text: str  # the matching key: no spaces or punctuation
    traditional: bool = False
    cleaned: str = ""  # the question after clean(), for display / the LLM


class Normalizer:
    def __init__(self, terms: Terms):
        self.terms = terms
        greetings = sorted({g.lower() for g in terms.greetings}, key=len, reverse=True)
        self._greet_re = (
            re.compile("^(?:" + "|".join(map(re.escape, greetings)) + ")+|(?:" + "|".join(map(re.escape, greetings)) + ")+$")
            if greetings
            else None
        )
        particles = "".join(re.escape(p) for p in terms.particles if len(p) == 1)
        self._particle_re = re.compile(f"[{particles}]+$") if particles else None
        pairs: dict[str, str] = {}
        for canon, variants in terms.synonyms.items():
            for v in variants:
                pairs[v.lower()] = canon
        self._syn = pairs
        self._syn_re = (
            re.compile("|".join(map(re.escape, sorted(pairs, key=len, reverse=True)))) if pairs else None
        )

    def _clause(self, clause: str) -> str:
        prev = None
        while clause and clause != prev:
            prev = clause
            if self._greet_re is not None:
                clause = self._greet_re.sub("", clause)
            if self._particle_re is not None:
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
        clauses = [self._clause(c) for c in _SPLIT_RE.split(lowered) if c]
        joined = "".join(c for c in clauses if c)
        if self._syn_re is not None:
            joined = self._syn_re.sub(lambda m: self._syn[m.group(0)], joined)
        return Normalized(text=joined, traditional=traditional, cleaned=cleaned.strip())
