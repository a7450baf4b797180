"""The one character-bigram helper matching, retrieval, the LLM guard and gap clustering share."""

from __future__ import annotations

from knowledge.bigrams import bigram_set, bigrams


def test_bigrams_keep_order_and_multiplicity():
    assert bigrams("") == []
    assert bigrams("卡") == ["卡"]  # a one-character text is its own bigram...
    assert bigrams("卡", single=False) == []  # ...unless the caller counts only real pairs
    assert bigrams("社保社保") == ["社保", "保社", "社保"]


def test_bigram_set():
    assert bigram_set("") == set()
    assert bigram_set("卡") == {"卡"}
    assert bigram_set("社保卡社保") == {"社保", "保卡", "卡社"}


def test_every_bigram_user_goes_through_the_helper():
    """Matching, retrieval, the guard, the claim checks and gap clustering agree with the helper on real text."""
    from bot.llm import claims, guard
    from storage.gaps import _features

    text = "电子社保卡怎么申领？"
    assert guard.content_bigrams(text) == bigram_set("电子社保卡怎么申领")
    assert claims.content_bigrams(text) == frozenset(bigrams("电子社保卡怎么申领"))
    assert claims.content_bigrams("卡") == frozenset() and guard.content_bigrams("卡") == {"卡"}
    assert _features("社保 卡") == {"社", "保", "社保", "卡"}
