"""Character bigrams: the unit text overlap is measured in everywhere in faqbot (matching, retrieval, the LLM
guard and claim checks, gap clustering). Chinese needs no word segmenter for this: most words are two characters,
and a pair of characters already says far more than one."""

from __future__ import annotations


def bigrams(text: str, *, single: bool = True) -> list[str]:
    """The character bigrams of ``text`` in order, repeats kept ("社保社保" -> 社保, 保社, 社保).

    A one-character text is its own bigram when ``single`` (a one-character question still has something to
    match), else it has none.
    """
    if len(text) < 2:
        return [text] if text and single else []
    return [text[i : i + 2] for i in range(len(text) - 1)]


def bigram_set(text: str, *, single: bool = True) -> set[str]:
    """The distinct character bigrams of ``text`` (see `bigrams`)."""
    return set(bigrams(text, single=single))
