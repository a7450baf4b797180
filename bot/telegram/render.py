"""Turning a core `Reply` into Telegram messages: entity-formatted text (no hand-made HTML), split to fit.

Telegram limits a message to 4096 UTF-16 code units; aiogram has no splitter, so `split_text` cuts at sentence
boundaries (Chinese and Western sentence ends, line breaks) and only cuts inside a sentence that alone is too long.
"""

from __future__ import annotations

from aiogram.utils.formatting import Bold, Text

from bot.answering import texts
from bot.answering.types import Reply, Route

MESSAGE_LIMIT = 4096
DRAFT_LIMIT = 4000  # previews are cut a little shorter, leaving room for the "generating" marker

_TERMINATORS = frozenset("。！？!?；;…\n")
_CLOSERS = frozenset("”’\"'」』）)】》")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (what Telegram counts)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, each keeping its end mark(s), closing quotes and trailing spaces.

    ``"".join(sentences(t)) == t`` always holds.
    """
    out: list[str] = []
    start, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _TERMINATORS or (ch == "." and (i + 1 == n or text[i + 1].isspace())):
            j = i + 1
            while j < n and (text[j] in _TERMINATORS or text[j] in _CLOSERS):
                j += 1
            while j < n and text[j] in " \t":
                j += 1
            out.append(text[start:j])
            start = i = j
            continue
        i += 1
    if start < n:
        out.append(text[start:])
    return out


def _hard_split(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` UTF-16 units, never inside a surrogate pair."""
    pieces: list[str] = []
    cur: list[str] = []
    size = 0
    for ch in text:
        w = 2 if ord(ch) > 0xFFFF else 1
        if size + w > limit:
            pieces.append("".join(cur))
            cur, size = [], 0
        cur.append(ch)
        size += w
    if cur:
        pieces.append("".join(cur))
    return pieces


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into messages of at most ``limit`` UTF-16 units, at sentence boundaries when possible.

    Whitespace at the cut points is dropped (Telegram trims it anyway) and no chunk is empty; the characters are
    otherwise kept in order. A text that fits is returned as one chunk, unchanged.
    """
    if limit < 2:
        raise ValueError("limit must be >= 2")
    if utf16_len(text) <= limit:
        return [text] if text.strip() else []
    chunks: list[str] = []
    cur: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal cur, size
        if cur:
            chunks.append("".join(cur))
        cur, size = [], 0

    for sentence in sentences(text):
        n = utf16_len(sentence)
        if n > limit:  # one sentence longer than a message: the only place where we cut mid-sentence
            flush()
            chunks.extend(_hard_split(sentence, limit))
            continue
        if size + n > limit:
            flush()
        cur.append(sentence)
        size += n
    flush()
    return [c.strip() for c in chunks if c.strip()]


def reply_texts(reply: Reply, limit: int = MESSAGE_LIMIT) -> list[Text]:
    """The messages showing ``reply``: split to fit; a curated answer's first line (the question) in bold."""
    chunks = split_text(reply.text or texts.ERROR, limit)
    out: list[Text] = []
    for i, chunk in enumerate(chunks):
        if i == 0 and reply.route is Route.FAQ:
            head, sep, rest = chunk.partition("\n")
            out.append(Text(Bold(head), sep, rest) if sep else Text(Bold(head)))
        else:
            out.append(Text(chunk))
    return out


def preview_text(draft: str, *, marker: str = "") -> str:
    """A partial LLM text for display while it is being generated, cut to fit one message."""
    text = draft.strip()
    room = DRAFT_LIMIT - utf16_len(marker)
    if utf16_len(text) > room:
        text = _hard_split(text, room - 1)[0] + "…"
    return f"{text}{marker}" if text else marker.strip()
