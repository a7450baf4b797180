"""The LLM prompts: Chinese text files in this folder, loaded at start-up and again on reload.

Files (UTF-8):
  system.txt   the system prompt; placeholders {canary} (random per process) and {refusal}
  user.txt     the user message; placeholders {entries}, {history}, {question}, {script}, {refusal}
  refusal.txt  the one sentence the model must answer with when the entries do not answer the question
  phrases.txt  "key = value" lines: simplified, traditional (the {script} instruction), no_history, quote_retry
  quote_system.txt, quote_user.txt    quote mode (the model only selects sentences); user: {entries}, {history},
                                      {question}
  verify_system.txt, verify_user.txt  the optional verifier pass of generate mode; user: {entries}, {answer}

Placeholders are filled in a single pass (`render`), so text inserted for one placeholder (a user's question that
contains "{canary}") is never expanded again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent
_PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")

REQUIRED = {
    "system.txt": {"canary", "refusal"},
    "user.txt": {"entries", "history", "question", "script"},
    "quote_system.txt": set(),
    "quote_user.txt": {"entries", "history", "question"},
    "verify_system.txt": set(),
    "verify_user.txt": {"entries", "answer"},
}
ALLOWED = {
    "system.txt": {"canary", "refusal"},
    "user.txt": {"entries", "history", "question", "script", "refusal"},
    "quote_system.txt": set(),
    "quote_user.txt": {"entries", "history", "question"},
    "verify_system.txt": set(),
    "verify_user.txt": {"entries", "answer"},
}
PHRASE_KEYS = ("simplified", "traditional", "no_history", "quote_retry")


class PromptError(Exception):
    """A prompt file is missing, empty, or has wrong placeholders."""


@dataclass(frozen=True)
class Prompts:
    system: str
    user: str
    refusal: str
    phrases: dict[str, str]
    directory: Path | None = None
    quote_system: str = ""
    quote_user: str = ""
    verify_system: str = ""
    verify_user: str = ""


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER_RE.findall(template))


def render(template: str, **values: str) -> str:
    """Replace each {name} by values[name] in one pass; unknown names stay as they are."""
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _read(directory: Path, name: str) -> str:
    path = directory / name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"{path}: cannot read: {exc}") from exc
    text = text.strip()
    if not text:
        raise PromptError(f"{path}: empty")
    return text


def _phrases(directory: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate(_read(directory, "phrases.txt").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise PromptError(f"{directory / 'phrases.txt'}:{n}: expected 'key = value'")
        out[key.strip()] = value.strip()
    missing = [k for k in PHRASE_KEYS if k not in out]
    if missing:
        raise PromptError(f"{directory / 'phrases.txt'}: missing {', '.join(missing)}")
    return out


def load_prompts(directory: str | Path | None = None) -> Prompts:
    """Read and validate every prompt file; raise PromptError (naming the file) on any problem."""
    directory = Path(directory) if directory else PROMPTS_DIR
    texts = {name: _read(directory, name) for name in REQUIRED}
    for name, text in texts.items():
        found = placeholders(text)
        missing = REQUIRED[name] - found
        unknown = found - ALLOWED[name]
        if missing:
            raise PromptError(
                f"{directory / name}: missing placeholder(s) {', '.join(f'{{{m}}}' for m in sorted(missing))}"
            )
        if unknown:
            raise PromptError(
                f"{directory / name}: unknown placeholder(s) {', '.join(f'{{{m}}}' for m in sorted(unknown))}"
            )
    refusal = _read(directory, "refusal.txt")
    if "\n" in refusal or len(refusal) > 200:
        raise PromptError(f"{directory / 'refusal.txt'}: must be one sentence of at most 200 characters")
    if placeholders(refusal):
        raise PromptError(f"{directory / 'refusal.txt'}: must not contain placeholders")
    return Prompts(
        system=texts["system.txt"],
        user=texts["user.txt"],
        refusal=refusal,
        phrases=_phrases(directory),
        directory=directory,
        quote_system=texts["quote_system.txt"],
        quote_user=texts["quote_user.txt"],
        verify_system=texts["verify_system.txt"],
        verify_user=texts["verify_user.txt"],
    )
