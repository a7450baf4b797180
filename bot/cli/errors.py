"""One-line messages for what can go wrong in a `faqbot` command: the CLI never shows a traceback to a user.

``describe(exc)`` turns an exception into ``(exit code, message)``; ``bot.cli.main.main`` prints the message on
stderr. Set ``FAQBOT_DEBUG=1`` to get the traceback as well (for bug reports).
"""
from __future__ import annotations

import errno
import sqlite3

from storage.safe_text import for_terminal

# Exit codes: 1 = the command failed (file, database, disk), 2 = usage (what argparse uses too).
FAILED = 1


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
    """The exit code and a one-line message for ``exc``; ``db`` (the log's path) prefixes database errors."""
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
