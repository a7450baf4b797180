"""What a `faqbot` command reads: the settings and the conversation log (read-only or for writing).

A missing log raises ``CommandError``; ``bot.cli.main.main`` prints it.
``storage.db`` is imported where a log is opened: it loads aiosqlite, which a one-shot `faqbot ask` does not need.
"""

from __future__ import annotations

from pathlib import Path

from bot.app.settings import Settings
from bot.cli.errors import FAILED, CommandError


def settings() -> Settings:
    return Settings()


def db_path(args, config=None) -> Path:
    """The log database: ``--db``, else FAQBOT_DB from the settings."""
    if getattr(args, "db", None):
        return Path(args.db)
    return Path((config or settings()).db)


def no_log(path) -> CommandError:
    return CommandError(FAILED, f"no conversation log at {path} (set FAQBOT_DB or pass --db)")


def open_log_readonly(args):
    """The log opened read-only (never created: a missing file is an error)."""
    from storage.db import open_db_sync

    path = db_path(args)
    try:
        return open_db_sync(path, readonly=True)
    except FileNotFoundError:
        raise no_log(path) from None


def open_log_for_writing(args, config=None):
    """The log opened for writing; an empty or foreign file is refused (LogSchemaError), never migrated into a log."""
    from storage.db import open_db_sync

    path = db_path(args, config)
    if not path.exists():
        raise no_log(path)
    return open_db_sync(path, readonly=False, create=False)
