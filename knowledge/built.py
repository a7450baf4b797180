"""Indexes built from a knowledge base, once per content: `BuiltPerContent(build)` is a callable ``kb -> index``.

The matcher and the retriever's BM25 index depend only on a knowledge base's content (entries, terms, aspects) and
are read-only once built, so every Answerer, the LLM fallback, a reload that changed nothing and the CLI verbs on the
same knowledge can share one. Keyed by `KnowledgeBase.version` (a digest of the files) and checked against the
content itself, so a knowledge base built in code, or edited after loading, is never served another one's index.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from cachetools import LRUCache

from knowledge.loader import KnowledgeBase

T = TypeVar("T")

# A few contents at a time: the running knowledge, the one a reload is checking, what tests and the CLI load.
MAX_CONTENTS = 4


class BuiltPerContent(Generic[T]):
    def __init__(self, build: Callable[[KnowledgeBase], T], maxsize: int = MAX_CONTENTS):
        self._build = build
        self._built: LRUCache[str, tuple[tuple, T]] = LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()  # LRUCache is not thread-safe; the build itself runs outside the lock

    def __call__(self, kb: KnowledgeBase) -> T:
        content = kb.content()
        with self._lock:
            cached = self._built.get(kb.version)
        if cached is not None and cached[0] == content:
            return cached[1]
        index = self._build(kb)
        with self._lock:
            self._built[kb.version] = (content, index)
        return index
