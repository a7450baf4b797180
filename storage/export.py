"""Export logged turns with their feedback counts as CSV or JSON Lines, oldest first, streaming (no full load).

Pseudonymous user ids and chat ids are not exported (``conversation_id`` links turns of one conversation).
Every CSV cell goes through ``safe_text.csv_cell`` (no formulas, no control characters); JSON Lines have C1
controls escaped. ``export_to_file`` never writes over the database it reads (or its -wal/-shm/-journal) and
writes through a temporary file renamed into place only when the whole export succeeded.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from storage import queries
from storage.safe_text import csv_cell, json_for_terminal
from storage.schema import JSON_COLUMNS, TURN_READ_COLUMNS

FORMATS = ("csv", "jsonl")
T = TypeVar("T")

# What the export adds to a turn's columns, from the review view: the conversation's chat type, the latest feedback
# and counts of every feedback row by kind.
_EXTRA = ("chat_type", "thumbs_up", "thumbs_down", "none_of_these")
_FIRST = ("turn_id", "ts", "channel", "via", "chat_type", "conversation_id")  # the columns a reader looks at first
COLUMNS = (
    *_FIRST,
    *(c for c in TURN_READ_COLUMNS if c not in _FIRST and c != "id"),
    "feedback",
    *_EXTRA[1:],
)


def iter_turns(
    conn: sqlite3.Connection,
    *,
    route: str | None = None,
    since: _dt.datetime | None = None,
    channel: str | None = None,
    feedback: str | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Turns as dicts (COLUMNS; JSON columns decoded to lists), oldest first: ``queries.iter_turns`` with the
    export's columns. Filters as ``logs list``; ``limit`` keeps the most recent N (None or 0 = all)."""
    return queries.iter_turns(
        conn, route=route, since=since, channel=channel, feedback=feedback, order="oldest", limit=limit, extra=_EXTRA
    )


def write_export(rows: Iterator[dict[str, Any]], out: IO[str], fmt: str) -> int:
    """Write rows to a text stream as ``csv`` (lists as JSON text, header row) or ``jsonl``; return the count."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for d in rows:
            flat = dict(d)
            for col in JSON_COLUMNS:
                flat[col] = json.dumps(d[col], ensure_ascii=False)
            writer.writerow({k: csv_cell(v) for k, v in flat.items()})
            n += 1
    else:
        for d in rows:
            out.write(json_for_terminal(json.dumps({k: d.get(k) for k in COLUMNS}, ensure_ascii=False)) + "\n")
            n += 1
    return n


class ExportError(Exception):
    """The export was refused or failed; the message is one line for the user."""


DB_COMPANIONS = ("", "-wal", "-shm", "-journal")


def _is_protected(target: Path, db: Path) -> bool:
    for suffix in DB_COMPANIONS:
        p = Path(f"{db}{suffix}")
        if target.resolve() == p.resolve():
            return True
        try:
            if os.path.samefile(target, p):  # a hard link, or another name for the same file
                return True
        except OSError:
            pass
    return False


def export_to_file(rows: Iterable[dict[str, Any]], path: str | Path, fmt: str, *, db: str | Path) -> int:
    """Write the export to ``path`` with ``write_file_safely``; return the row count.
    CSV gets a byte order mark so spreadsheet programs read the Chinese text as UTF-8."""
    encoding = "utf-8-sig" if fmt == "csv" else "utf-8"
    return write_file_safely(path, lambda fh: write_export(rows, fh, fmt), db=db, encoding=encoding)


def write_file_safely(path: str | Path, write: Callable[[IO[str]], T], *, db: str | Path, encoding: str = "utf-8") -> T:
    """Call ``write(text_stream)`` to produce ``path``; return what it returns. Refuses ``db`` and its companion
    files (ExportError).

    A regular file (new or existing) is written as a temporary file (mode 0600) in the same folder, flushed to
    disk and renamed over ``path`` only on success, so a failed export (disk full, interrupted) leaves any old
    file intact and no partial one. An existing non-regular file (a FIFO, /dev/stdout) is written directly.
    """
    path = Path(path)
    if _is_protected(path, Path(db)):
        raise ExportError(f"refusing to export onto the conversation log itself ({path}); choose another file")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise ExportError(f"cannot write {path}: it is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            with open(path, "w", encoding=encoding, newline="") as fh:
                return write(fh)
        except OSError as exc:
            raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except FileNotFoundError:
        raise ExportError(f"cannot write {path}: the folder {folder} does not exist") from None
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
            result = write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return result
