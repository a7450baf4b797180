"""Select-and-quote: the model only names which sentences of the entries answer; the reply is the curated text.

Each entry's answer is cut into *units* — sentences, and the lines of numbered steps (①②③) — labelled
``<entry id>.<n>`` (n from 1); the bare entry id means the whole answer. The model gets the labelled entries and
returns ``{"answerable": bool, "quotes": [label, ...]}``, constrained by a JSON Schema whose label list is an enum
of exactly the labels it was sent (where the server supports ``response_format``), and always checked here by a
strict parser: one JSON object (a reasoning block or one Markdown code fence around it is tolerated), exactly those
two keys, known labels only. Nothing the model writes is ever shown; `compose` builds the reply from the units.

A unit under a heading ("①线下修改：" above "成年人：…"; "②补办：…" above "未成年人：…") is always quoted with that
heading, so a quoted condition never loses the channel or the case it belongs to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bot.answering import texts
from knowledge.loader import Entry

# Sentences end at 。！？ (closing brackets/quotes stay with their sentence); ；and ，do not end a unit: they join
# clauses whose meaning depends on each other ("一是……；二是……").
_SENTENCE_RE = re.compile(r"[^。！？!?]*(?:[。！？!?]+[”’」』）)]*|$)")
_STEP_RE = re.compile(r"^[①-⑳]")
_HEADING_END = ("：", ":")
_THINK_RE = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE_RE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```$", re.S)
MAX_ENTRIES = 3  # at most this many entries are quoted in one reply
KEYS = ("answerable", "quotes")


@dataclass(frozen=True)
class Unit:
    label: str  # "apply.2"
    entry_id: str
    index: int  # 1-based position in the entry
    line: int  # source line number within the answer (0-based)
    text: str  # the curated text, verbatim
    heads: tuple[int, ...] = ()  # indexes of the heading units quoted with this one


@dataclass(frozen=True)
class EntryUnits:
    entry: Entry
    units: tuple[Unit, ...]

    def by_index(self, i: int) -> Unit:
        return self.units[i - 1]


def split_units(entry: Entry) -> EntryUnits:
    units: list[Unit] = []
    intro_head: int | None = None  # a "…：" line that introduces what follows ("可通过以下操作步骤进行重置密码：")
    step_head: int | None = None  # first unit of the current ①/② block
    for line_no, line in enumerate(raw.strip() for raw in entry.answer.split("\n")):
        if not line:
            continue
        step = bool(_STEP_RE.match(line))
        if step:
            step_head = None
        first_of_line: int | None = None
        for sentence in _SENTENCE_RE.findall(line):
            if not sentence.strip():
                continue
            index = len(units) + 1
            heads = tuple(h for h in (intro_head, step_head) if h is not None and h != index)
            if first_of_line is not None and first_of_line not in heads and step:
                heads = heads + (first_of_line,)  # later sentences of a step line need its start ("①挂失：…")
            units.append(Unit(f"{entry.id}.{index}", entry.id, index, line_no, sentence.strip(), tuple(sorted(heads))))
            if first_of_line is None:
                first_of_line = index
        if step:
            step_head = first_of_line
        elif line.endswith(_HEADING_END) and step_head is None:
            intro_head = first_of_line
    return EntryUnits(entry, tuple(units))


def index_units(entries: Iterable[Entry]) -> dict[str, EntryUnits]:
    return {e.id: split_units(e) for e in entries}


def escape(text: str) -> str:
    return text.replace("<", "＜").replace(">", "＞")


def entry_block(eu: EntryUnits) -> str:
    lines = [f"<<<FAQ id={eu.entry.id}>>>", f"问：{escape(eu.entry.question)}"]
    lines += [f"[{u.label}] {escape(u.text)}" for u in eu.units]
    lines.append("<<<END>>>")
    return "\n".join(lines)


def labels(context: Iterable[EntryUnits]) -> list[str]:
    out: list[str] = []
    for eu in context:
        out.append(eu.entry.id)
        out.extend(u.label for u in eu.units)
    return out


def response_format(allowed: list[str]) -> dict:
    """OpenAI Structured Outputs (strict) for the selection; vLLM, llama.cpp and Ollama read the same shape."""
    schema = {
        "type": "object",
        "properties": {
            "answerable": {"type": "boolean"},
            "quotes": {"type": "array", "items": {"type": "string", "enum": allowed}},
        },
        "required": list(KEYS),
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "faq_selection", "strict": True, "schema": schema}}


class SelectionError(ValueError):
    """The model's output is not a valid selection. `kind`: unparseable (worth one retry) or out-of-context."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Selection:
    answerable: bool
    quotes: tuple[str, ...] = field(default_factory=tuple)


def parse(raw: str, allowed: Iterable[str]) -> Selection:
    """The strict parser. Raises SelectionError."""
    text = _THINK_RE.sub("", raw or "").strip()
    fenced = _FENCE_RE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        raise SelectionError("unparseable", "empty output")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise SelectionError("unparseable", f"not one JSON object: {exc}"[:160]) from None
    except RecursionError:  # "[[[[…" nested beyond the parser's stack
        raise SelectionError("unparseable", "JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise SelectionError("unparseable", "the JSON value is not an object")
    if set(obj) != set(KEYS):
        raise SelectionError(
            "unparseable", f"keys must be exactly answerable, quotes (got {', '.join(sorted(obj))[:80]})"
        )
    answerable, quotes = obj["answerable"], obj["quotes"]
    if not isinstance(answerable, bool):
        raise SelectionError("unparseable", "answerable must be true or false")
    if not isinstance(quotes, list) or not all(isinstance(q, str) for q in quotes):
        raise SelectionError("unparseable", "quotes must be a list of labels")
    allowed_set = set(allowed)
    unknown = [q for q in quotes if q.strip() not in allowed_set]
    if unknown:
        raise SelectionError("out-of-context", "labels not sent: " + ", ".join(q[:30] for q in unknown[:3]))
    seen: list[str] = []
    for q in quotes:
        if q.strip() not in seen:
            seen.append(q.strip())
    return Selection(answerable, tuple(seen))


def chosen_units(selection: Selection, context: Mapping[str, EntryUnits]) -> list[tuple[EntryUnits, list[Unit]]]:
    """The units to show per entry, entries in the order first chosen (at most MAX_ENTRIES), units in source order,
    each with its headings."""
    picked: dict[str, set[int]] = {}
    for label in selection.quotes:
        entry_id, _, index = label.partition(".")
        eu = context[entry_id]
        indexes = picked.setdefault(entry_id, set())
        if not index:
            indexes.update(u.index for u in eu.units)
            continue
        unit = eu.by_index(int(index))
        indexes.add(unit.index)
        indexes.update(unit.heads)
    out = []
    for entry_id, indexes in list(picked.items())[:MAX_ENTRIES]:
        eu = context[entry_id]
        out.append((eu, [eu.by_index(i) for i in sorted(indexes)]))
    return out


def compose(chosen: list[tuple[EntryUnits, list[Unit]]]) -> str:
    """The reply body: the fixed lead-in, then per entry its question and the chosen units, verbatim.

    Consecutive units of one source line are joined as they were written; others start a new line.
    """
    blocks = [texts.QUOTE_LEAD]
    for eu, units in chosen:
        lines: list[str] = []
        prev: Unit | None = None
        for u in units:
            if prev is not None and prev.line == u.line and prev.index + 1 == u.index:
                lines[-1] += u.text
            else:
                lines.append(u.text)
            prev = u
        blocks.append(texts.quote_heading(eu.entry.question) + "\n" + "\n".join(lines))
    return "\n\n".join(blocks)
