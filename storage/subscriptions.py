"""Opt-in "tell me when there is an answer" requests: the only place a raw chat id is stored.

A person whose question the bot could not answer may press 有答案时通知我. Only then is their chat id stored --
raw, because it is needed to send the answer later -- with the (masked) question, in its own SQLite file next to
the conversation log (``<log>.notify.db``, mode 0600). Keeping it out of the log file means it is never served by
Datasette, exported, replayed, copied into turns or backed up with the log. A request is deleted when its answer
is sent (claimed first, so it is sent at most once) and purged when it expires (30 days).
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from pathlib import Path
from typing import Any

from storage.db import utc_iso
from storage.safety import prepare_private_db

DAYS = 30
_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    question TEXT NOT NULL,
    traditional INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    expires TEXT NOT NULL,
    UNIQUE (channel, chat_id, turn_id)
)
"""


def path_for(log_db: str | Path) -> Path:
    """The subscriptions file that belongs to a conversation log: ``faqbot.db`` -> ``faqbot.notify.db``."""
    p = Path(log_db)
    return p.with_name(p.stem + ".notify.db")


def _connect(path: Path) -> sqlite3.Connection:
    # It holds raw chat ids: the same checks as the log (storage.safety), created 0600 in a 0700 folder.
    prepare_private_db(path, "notify-request file")
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(_SCHEMA)
    return conn


def subscribe(
    path: Path,
    *,
    channel: str,
    chat_id: str,
    turn_id: str,
    question: str,
    traditional: bool = False,
    days: int = DAYS,
    now: _dt.datetime | None = None,
) -> bool:
    """Store a request; False when this chat already asked to be told about this turn."""
    now = now or _dt.datetime.now(_dt.UTC)
    conn = _connect(path)
    try:
        # Expired requests go whenever the file is written, not only when the knowledge is reloaded.
        conn.execute("DELETE FROM subscriptions WHERE expires < ?", (utc_iso(now),))
        cur = conn.execute(
            "INSERT OR IGNORE INTO subscriptions (channel, chat_id, turn_id, question, traditional, created, expires) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                channel,
                str(chat_id),
                turn_id,
                question,
                int(bool(traditional)),
                utc_iso(now),
                utc_iso(now + _dt.timedelta(days=days)),
            ),
        )
        return cur.rowcount == 1
    finally:
        conn.close()


def purge_expired(path: Path, now: _dt.datetime | None = None) -> int:
    if not path.exists():
        return 0
    conn = _connect(path)
    try:
        return conn.execute("DELETE FROM subscriptions WHERE expires < ?", (utc_iso(now),)).rowcount
    finally:
        conn.close()


def pending(path: Path, channel: str) -> list[dict[str, Any]]:
    """Unexpired requests of one channel, oldest first."""
    if not path.exists():
        return []
    conn = _connect(path)
    try:
        cur = conn.execute(
            "SELECT id, chat_id, turn_id, question, traditional, created FROM subscriptions "
            "WHERE channel = ? AND expires >= ? ORDER BY id",
            (channel, utc_iso()),
        )
        return [
            dict(zip(("id", "chat_id", "turn_id", "question", "traditional", "created"), r, strict=False)) for r in cur
        ]
    finally:
        conn.close()


def claim(path: Path, sub_id: int) -> bool:
    """Delete one request before its answer is sent; False when another process claimed it first."""
    conn = _connect(path)
    try:
        return conn.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,)).rowcount == 1
    finally:
        conn.close()


def count(path: Path) -> int:
    if not path.exists():
        return 0
    conn = _connect(path)
    try:
        return conn.execute("SELECT count(*) FROM subscriptions").fetchone()[0]
    finally:
        conn.close()
