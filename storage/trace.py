"""Compact storage of a turn's decision trace: ranked candidates, the LLM's raw output, the knowledge version.

Stored as JSON arrays without keys and without the entry's question: ``[["lost_reissue",9,87.5],...]``
(faq_id, section, score). The question is the knowledge base's own text, so storing it with every turn was most
of the ~540 bytes the candidates took; review tools look it up in the knowledge base when they show it. Rows
written before this format (a list of objects with keys) are still read, and `faqbot logs compact` converts them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

OLD_FORMAT_PREFIX = "[{"  # a JSON list of objects: the format before compaction


def encode_candidates(candidates: Iterable[Any]) -> str:
    """``Candidate`` objects or dicts (faq_id, section, score) -> compact JSON text."""
    out = []
    for c in candidates:
        d = c.as_dict() if hasattr(c, "as_dict") else dict(c)
        score = d.get("score")
        out.append([d.get("faq_id"), d.get("section"), None if score is None else round(float(score), 1)])
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def decode_candidates(value: str | None) -> list[dict[str, Any]]:
    """Stored candidates (compact or the older list of objects) -> list of dicts with faq_id, section, score
    (and question, when the row still has it). Anything unreadable -> []."""
    if not value:
        return []
    try:
        data = json.loads(value)
    except ValueError:
        return []
    if not isinstance(data, list):
        return []
    out: list[dict[str, Any]] = []
    for item in data:
        if isinstance(item, dict):
            out.append(item)
        elif isinstance(item, list) and item:
            out.append(
                {
                    "faq_id": item[0],
                    "section": item[1] if len(item) > 1 else None,
                    "score": item[2] if len(item) > 2 else None,
                }
            )
    return out


def compact_candidates(value: str | None) -> str | None:
    """Old-format candidates text -> compact text (other values unchanged)."""
    if not value or not value.startswith(OLD_FORMAT_PREFIX):
        return value
    return encode_candidates(decode_candidates(value))


# The knowledge version a turn was answered with is stored once per version in `knowledge_versions` and referenced
# by `turns.knowledge_id` (migration m008); readers select it with this expression (alias ``t`` for turns).
KNOWLEDGE_VERSION_SQL = "(SELECT kv.version FROM knowledge_versions kv WHERE kv.id = t.knowledge_id)"

# An LLM's raw output is the answer itself in most LLM turns (the guard passed it unchanged); such a row stores ''
# in `llm_raw` instead of a second copy of the answer, and a turn without raw output stores NULL (m008). Readers
# select the raw output with this expression.
LLM_RAW_SAME_AS_ANSWER = ""
LLM_RAW_SQL = "(CASE WHEN t.llm_raw = '' THEN t.answer ELSE t.llm_raw END)"


def stored_llm_raw(llm_raw: str | None, answer: str | None) -> str | None:
    """What the writer stores in `llm_raw`: NULL for no output, '' when it equals the answer, else the text."""
    if not llm_raw:
        return None
    return LLM_RAW_SAME_AS_ANSWER if llm_raw == answer else llm_raw
