"""Keep the bot token, API keys and passwords -- and personal data -- out of log output.

aiogram and aiohttp log request URLs, and Telegram puts the bot token in the URL path
(``https://api.telegram.org/bot<token>/getMe``); exceptions raised by HTTP clients often repeat the URL. The filter
renders each record's message (``msg % args``), replaces every configured secret and anything shaped like a Telegram
bot token with ``***``, masks personal data (`bot.answering.privacy.mask_log_text`: ID, phone and card numbers, names and
usernames in dumped objects), and does the same for the formatted traceback and stack info.

Where it is attached (`install_redaction`), and why:

* on every handler of the root logger (and on `logging.lastResort`, which prints when no handler is configured).
  A filter on a *logger* only sees records logged through that exact logger, not through its children
  ("aiogram.event", "aiohttp.access", ...), whereas a filter on a *handler* sees every record the handler emits,
  whatever logger it came from. This is the part that does the real work. Call `install_redaction` after logging
  has been configured: handlers added later do not get the filter.
* on the loggers "aiogram", "aiohttp", "openai", "httpx", "mautrix" themselves and on any handlers they have of their
  own (covers libraries configured with ``propagate=False`` and their own handler). This is belt and braces.

Calling `install_redaction` again replaces the previously installed filters (no duplicates).
"""

from __future__ import annotations

import io
import logging
import re
import traceback
from collections.abc import Callable, Iterable
from typing import TextIO
from urllib.parse import quote

from bot.answering.privacy import mask_log_text

__all__ = [
    "RedactSecretsFilter",
    "RedactingStream",
    "install_redaction",
    "secret_redactor",
    "REDACTED",
    "BOT_TOKEN_RE",
    "API_KEY_RE",
    "LIBRARY_LOGGERS",
]

REDACTED = "***"
BOT_TOKEN_RE = r"\d{6,12}:[A-Za-z0-9_-]{30,}"
# Shapes of credentials that were not configured here but are still secrets when echoed back: OpenAI-style keys
# ("sk-...", "sk-proj-...", also used by DeepSeek, Anthropic, vLLM deployments) and bearer tokens in headers.
API_KEY_RE = r"\bsk-[A-Za-z0-9][A-Za-z0-9_-]{15,}|(?i:\bbearer\s+)[A-Za-z0-9._~+/-]{12,}=*"
# What every match of BOT_TOKEN_RE contains: a colon followed by 30 token characters. A pattern starting with a
# literal is searched by the regex engine's literal scan, unlike the full alternation, which is tried at every
# position of the text (~94 us for a line of `logs list --json`).
_TOKEN_HINT = re.compile(r":[A-Za-z0-9_-]{30}")
_PART_BREAK = "\n\x00\x00\n"  # joins message, traceback and stack for cleaning; no pattern matches across it
LIBRARY_LOGGERS = ("aiogram", "aiohttp", "openai", "httpx", "mautrix", "mau")  # mautrix logs under "mau.*"


class RedactSecretsFilter(logging.Filter):
    """A logging filter that rewrites records so that they contain no secret and no personal data; it never drops
    a record.

    `secrets`: bot token, API keys, passwords, ... Empty, None and values shorter than `min_length` are ignored (a
    three-letter "secret" would redact ordinary words). The URL-encoded form of each secret is redacted too.
    `personal_data`: also mask ID / phone / card numbers and the names and usernames in dumped objects
    (`bot.answering.privacy.mask_log_text`) -- e.g. the raw update batch aiogram logs when it cannot parse one.
    """

    def __init__(self, secrets: Iterable[str | None], min_length: int = 6, *, personal_data: bool = True) -> None:
        super().__init__()
        self.personal_data = personal_data
        values: set[str] = set()
        for s in secrets:
            if not s:
                continue
            s = str(s).strip()
            if len(s) < min_length:
                continue
            values.add(s)
            values.add(quote(s, safe=""))
        # Longest first, so that a secret containing another one is replaced as a whole.
        alternatives = [re.escape(s) for s in sorted(values, key=len, reverse=True)]
        alternatives += [BOT_TOKEN_RE, API_KEY_RE]
        self._pattern = re.compile("|".join(alternatives))
        self._literals = tuple(values)
        self.secret_count = len(values)

    def _may_hold_secret(self, text: str) -> bool:
        """False only when no alternative of the pattern can match: each needs one of these substrings (a
        configured secret, "sk-", a colon followed by 30 token characters, or "bearer" in any case -- no other
        character folds to one of its letters)."""
        return (
            "sk-" in text
            or any(s in text for s in self._literals)
            or _TOKEN_HINT.search(text) is not None
            or "bearer" in text.lower()
        )

    def redact(self, text: str) -> str:
        # The prefilter skips the regex for text that cannot contain a secret (most printed lines and log rows).
        if not self._may_hold_secret(text):
            return text
        return self._pattern.sub(REDACTED, text)

    def _clean(self, text: str) -> str:
        text = self.redact(text)
        return mask_log_text(text) if self.personal_data else text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the pieces, redacted, rather than leak them in the error
            message = f"{record.msg!s} {record.args!r}"
        if record.exc_info and record.exc_info != (None, None, None) and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        # Cleaned as one text: a name found in the traceback's dump is masked in the message too, and vice versa.
        parts = [message, record.exc_text or "", record.stack_info or ""]
        if any(_PART_BREAK in part for part in parts):  # cannot be joined safely: clean each on its own
            message, exc_text, stack_info = map(self._clean, parts)
        else:
            message, exc_text, stack_info = self._clean(_PART_BREAK.join(parts)).split(_PART_BREAK)
        record.msg = message
        record.args = None
        if record.exc_text:
            record.exc_text = exc_text
            # Drop the live exception so no handler (e.g. a rich traceback renderer) formats it again unredacted;
            # logging.Formatter appends record.exc_text on its own.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = stack_info
        return True


def secret_redactor(secrets: Iterable[str | None]) -> Callable[[str], str]:
    """A function replacing every secret in ``secrets`` (and anything token- or API-key-shaped) with ``***``.

    Given to the conversation-log writer, so what an LLM server echoes ("Incorrect API key provided: sk-...") is
    not stored, and used by `RedactingStream` for everything a command prints.
    """
    return RedactSecretsFilter(secrets, personal_data=False).redact


class RedactingStream(io.TextIOBase):
    """A text stream that writes to ``stream`` with every secret redacted (``faqbot``'s stdout and stderr).

    Each ``write()`` is redacted on its own: a secret split over two writes would pass. Every printer in the
    CLI writes a value in one call (print() writes the text, then the line end), so in practice that does not
    happen.
    """

    def __init__(self, stream: TextIO, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._stream = stream
        self._redact = redact

    def write(self, text: str) -> int:
        self._stream.write(self._redact(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._stream, "errors", None)


def install_redaction(secrets: list[str]) -> None:
    """Attach one `RedactSecretsFilter` for `secrets` where records are emitted (see the module docstring)."""
    flt = RedactSecretsFilter(secrets)
    root = logging.getLogger()
    targets: list[logging.Filterer] = list(root.handlers)
    if logging.lastResort is not None:
        targets.append(logging.lastResort)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        targets.append(logger)
        targets.extend(logger.handlers)
    seen: set[int] = set()
    for target in targets:
        if id(target) in seen:
            continue
        seen.add(id(target))
        for old in [f for f in target.filters if isinstance(f, RedactSecretsFilter)]:
            target.removeFilter(old)
        target.addFilter(flt)
