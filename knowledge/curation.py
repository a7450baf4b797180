"""Changing the knowledge folder safely: new alternates in entry files, draft entries, approving a draft.

Every change is tried on a temporary copy of the folder first and loaded with the real loader, so nothing that
would fail to load (a shared alternate, a missing field, a TOML error) is ever written to the served folder.

Drafts live in ``<knowledge>/drafts/<id>.toml``. The loader reads only ``faq/*.toml``, so a draft is never served
and does not change the knowledge version. A draft is an entry file with a comment header (where it came from,
which turns asked it); ``approve`` checks it, loads the knowledge with it, and moves it to ``faq/NN_<id>.toml``.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import re
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.loader import ID_RE, MIN_ALTERNATES, KnowledgeBase, KnowledgeError, Problem, load_knowledge

DRAFTS_DIR = "drafts"
PLACEHOLDER_ANSWER = "待补充"  # what a draft made from questions alone says until a curator writes the answer
_TURNS_RE = re.compile(r"^# turns: (.*)$", re.MULTILINE)
_ALTERNATES_RE = re.compile(r"^alternates\s*=\s*\[", re.MULTILINE)
_FILE_NUMBER_RE = re.compile(r"^(\d+)_")


class CurationError(Exception):
    """A change that cannot be made; the message says what to do."""


def toml_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def drafts_dir(kdir: Path) -> Path:
    return Path(kdir) / DRAFTS_DIR


def append_alternates(text: str, new: list[str]) -> str:
    """An entry file's text with ``new`` added at the end of its ``alternates`` array, the rest untouched.

    Raises CurationError when the array cannot be found or the result does not read back as the old alternates
    plus the new ones (an unusual layout: add them by hand)."""
    if not new:
        return text
    old = tomllib.loads(text).get("alternates") or []
    m = _ALTERNATES_RE.search(text)
    if m is None:
        raise CurationError("no 'alternates = [' line")
    # The closing bracket of a multi-line array sits alone at the start of a line in every entry file.
    end = re.compile(r"^\]", re.MULTILINE).search(text, m.end())
    if end is None:
        raise CurationError("the alternates array does not end with ']' on its own line")
    body = text[m.end() : end.start()]
    lines = "".join(f"  {toml_str(q)},\n" for q in new)
    # The last old item normally ends with a comma (possibly followed by a comment); if not, one is added.
    # Whichever reads back as old + new is kept.
    attempts = [body + ("" if body.endswith("\n") or not body else "\n") + lines, body.rstrip() + ",\n" + lines]
    for candidate in attempts:
        out = text[: m.end()] + candidate + text[end.start() :]
        try:
            if tomllib.loads(out).get("alternates") == [*old, *new]:
                return out
        except tomllib.TOMLDecodeError:
            continue
    raise CurationError("the alternates array has an unusual layout")


@dataclass
class DraftEntry:
    id: str
    section: int
    question: str
    alternates: list[str]
    answer: str = PLACEHOLDER_ANSWER
    title: str = ""
    turn_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # comment lines (without '# ')

    def render(self) -> str:
        lines = [f"# draft entry: not served until `faqbot knowledge approve {self.id}` moves it to faq/"]
        lines += [f"# {n}" for n in self.notes]
        if self.answer.strip() == PLACEHOLDER_ANSWER:
            lines.append(
                f"# write the answer (from the source FAQ) in place of {PLACEHOLDER_ANSWER}; "
                f"at least {MIN_ALTERNATES} alternates"
            )
        if self.turn_ids:
            lines.append("# turns: " + " ".join(self.turn_ids))
        lines += [
            f"id = {toml_str(self.id)}",
            f"section = {int(self.section)}",
            f"title = {toml_str(self.title or self.question[:12])}",
            f"question = {toml_str(self.question)}",
            'answer = """',
            _multiline_body(self.answer.strip()),
            '"""',
            "alternates = [",
            *[f"  {toml_str(q)}," for q in self.alternates],
            "]",
        ]
        return "\n".join(lines) + "\n"


def _multiline_body(text: str) -> str:
    """``text`` as the inside of a TOML multi-line basic string: backslashes and quote runs escaped, control
    characters other than newline and tab dropped (a curator's chat message may hold anything)."""
    text = "".join(ch for ch in text if ch in "\n\t" or ord(ch) >= 32 and ch != "\x7f")
    return text.replace("\\", "\\\\").replace('"', '\\"')


def draft_id(base: str, taken: set[str]) -> str:
    """A free entry id from ``base`` (cleaned to a-z 0-9 _), numbered when taken."""
    clean = re.sub(r"[^a-z0-9_]+", "_", base.lower()).strip("_")[:34] or "draft"
    if len(clean) < 2:
        clean = f"draft_{clean}"
    cand, n = clean, 2
    while cand in taken:
        cand, n = f"{clean}_{n}", n + 1
    if not ID_RE.match(cand):
        raise CurationError(f"cannot make an entry id from {base!r}")
    return cand


def existing_ids(kdir: Path, kb: KnowledgeBase) -> set[str]:
    return {e.id for e in kb.entries} | {p.stem for p in drafts_dir(kdir).glob("*.toml")}


def draft_turns(text: str) -> list[str]:
    m = _TURNS_RE.search(text)
    return m.group(1).split() if m else []


def unified_diff(rel: str, old: str | None, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{rel}" if old is not None else "/dev/null",
            tofile=f"b/{rel}",
        )
    )


def load_with_changes(kdir: Path, changes: dict[str, str]) -> KnowledgeBase:
    """Load the knowledge of ``kdir`` with ``changes`` ({path relative to kdir: new text}) applied on a copy.

    Raises KnowledgeError like the loader; the copy is removed afterwards (the returned base keeps no file open).
    """
    with tempfile.TemporaryDirectory(prefix="faqbot-knowledge-") as tmp:
        copy = Path(tmp) / "knowledge"
        shutil.copytree(kdir, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py", DRAFTS_DIR))
        for rel, text in changes.items():
            path = copy / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        kb = load_knowledge(copy)
    kb.directory = Path(kdir)
    return kb


def write_changes(kdir: Path, changes: dict[str, str]) -> list[Path]:
    """Write each file atomically (a temporary file renamed over it)."""
    written = []
    for rel, text in changes.items():
        path = Path(kdir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written


def next_entry_file(kdir: Path, entry_id: str) -> str:
    """``faq/NN_<id>.toml`` with NN one above the highest number in use."""
    numbers = [int(m.group(1)) for p in (Path(kdir) / "faq").glob("*.toml") if (m := _FILE_NUMBER_RE.match(p.name))]
    return f"faq/{(max(numbers) + 1 if numbers else 1):02d}_{entry_id}.toml"


@dataclass
class Approval:
    draft: Path
    target: str  # relative to the knowledge folder
    text: str
    kb: KnowledgeBase
    turn_ids: list[str]


def check_draft(kdir: Path, entry_id: str, *, approver: str = "", today: _dt.date | None = None) -> Approval:
    """Validate ``drafts/<entry_id>.toml`` as it would be served; raise CurationError / KnowledgeError."""
    kdir = Path(kdir)
    path = drafts_dir(kdir) / f"{entry_id}.toml"
    if not ID_RE.match(entry_id or "") or not path.is_file():
        have = sorted(p.stem for p in drafts_dir(kdir).glob("*.toml"))
        raise CurationError(
            f"no draft {entry_id!r} in {drafts_dir(kdir)}"
            + (f" (drafts: {', '.join(have)})" if have else " (no drafts)")
        )
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KnowledgeError([Problem(f"{DRAFTS_DIR}/{path.name}", entry_id, f"TOML syntax error: {exc}")]) from None
    if data.get("id") != entry_id:
        raise KnowledgeError(
            [
                Problem(
                    f"{DRAFTS_DIR}/{path.name}",
                    entry_id,
                    f"the file's id is {data.get('id')!r}: it must equal the file name",
                )
            ]
        )
    if str(data.get("answer", "")).strip() in ("", PLACEHOLDER_ANSWER):
        raise KnowledgeError(
            [
                Problem(
                    f"{DRAFTS_DIR}/{path.name}", entry_id, f"the answer is still '{PLACEHOLDER_ANSWER}': write it first"
                )
            ]
        )
    turn_ids = draft_turns(text)
    # The served file keeps the entry, not the draft's bookkeeping comments.
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#")).lstrip("\n") + "\n"
    stamp = (today or _dt.date.today()).isoformat()
    served = (
        f"# approved from {DRAFTS_DIR}/{path.name}" + (f" by {approver}" if approver else "") + f" on {stamp}\n" + body
    )
    target = next_entry_file(kdir, entry_id)
    kb = load_with_changes(kdir, {target: served})
    return Approval(draft=path, target=target, text=served, kb=kb, turn_ids=turn_ids)


def approve(kdir: Path, approval: Approval) -> Path:
    """Move a checked draft into ``faq/`` (written first, then the draft removed)."""
    [written] = write_changes(kdir, {approval.target: approval.text})
    approval.draft.unlink()
    return written
