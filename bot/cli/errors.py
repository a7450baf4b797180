"""What can go wrong in a `faqbot` command, as an exit code and a message: the CLI never shows a traceback to a user.

A command that fails for a reason it knows raises ``CommandError(code, message)``; anything else (a database, a
file, the knowledge base) is raised as it is. ``describe(exc)`` turns either into ``(exit code, message)`` and
``bot.cli.main.main`` -- the one place that handles errors -- prints the message on stderr and exits with the code.
Set ``FAQBOT_DEBUG=1`` to get the traceback of an unexpected error as well (for bug reports).
"""

from __future__ import annotations

import errno
import sqlite3

from bot.app.runner import ConfigurationError
from knowledge.loader import KnowledgeError
from storage.safe_text import for_terminal

# Exit codes: 1 = the command failed (file, database, disk, not found), 2 = usage (what argparse uses too),
# 3 = a measured threshold was missed (`eval`, `eval-guard`).
FAILED = 1
USAGE = 2
MISSED = 3


class CommandError(Exception):
    """A failure the command explains itself: ``message`` is printed as it is (it may span lines), then exit ``code``."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def expected(exc: BaseException) -> bool:
    """True for a failure the message fully explains (no traceback even with FAQBOT_DEBUG)."""
    return isinstance(exc, (CommandError, KnowledgeError, ConfigurationError))


def _one_line(text: str) -> str:
    return " ".join(for_terminal(text).split())


def _os_error(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        what = f"{what} (disk full?)"
    where = exc.filename if exc.filename is not None else None
    return f"{where}: {what}" if where else what


def _sqlite_error(exc: sqlite3.Error) -> str:
    text = str(exc)
    low = text.lower()
    if "database is locked" in low or "database table is locked" in low:
        return "the conversation log is locked by another process (the bot or a long review); try again in a moment"
    if "file is not a database" in low:
        return "not an SQLite database (expected a faqbot conversation log)"
    if "unable to open database file" in low:
        return "cannot open the database file (missing folder, a directory, or no permission)"
    if "no such table" in low or "no such column" in low:
        return f"not a faqbot conversation log ({text})"
    if "readonly" in low or "read-only" in low:
        return f"the database is read-only ({text})"
    if "disk is full" in low or "disk i/o" in low:
        return f"{text} (disk full?)"
    return f"database error: {text}"


def describe(exc: BaseException, *, db: object = None) -> tuple[int, str]:
    """The exit code and the message for ``exc``; ``db`` (the log's path) prefixes database errors.

    A ``CommandError`` and a ``KnowledgeError`` (its problems one per line) keep their text; a ``ConfigurationError``
    (`faqbot run` cannot start what the settings ask for) is a usage error; anything else becomes one line starting
    with "faqbot: "."""
    if isinstance(exc, CommandError):
        return exc.code, str(exc)
    if isinstance(exc, ConfigurationError):
        return USAGE, "faqbot run: " + _one_line(str(exc))
    if isinstance(exc, KnowledgeError):
        return FAILED, str(exc)
    if isinstance(exc, sqlite3.Error):
        msg = _sqlite_error(exc)
        if db is not None:
            msg = f"{db}: {msg}"
    elif isinstance(exc, OSError):
        msg = _os_error(exc)
    elif isinstance(exc, OverflowError):
        msg = f"a number is out of range ({exc})"
    elif isinstance(exc, UnicodeError):
        msg = f"text could not be encoded or decoded ({exc})"
    elif isinstance(exc, MemoryError):
        msg = "out of memory"
    else:
        msg = str(exc) or type(exc).__name__
        if type(exc).__module__ in ("builtins", "sqlite3") or not str(exc):
            msg = f"{type(exc).__name__}: {msg}" if str(exc) else msg
    return FAILED, "faqbot: " + _one_line(msg)
