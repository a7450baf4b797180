"""pytest fixtures for the Matrix tests; import them into a test module (``from tests.matrix.fixtures import *``).

* ``synapse``  -- a real Synapse on 127.0.0.1, started once per test session for every Matrix test module (defined
                  in tests/conftest.py: a fixture imported into two modules would start two servers).
* ``bot_user`` -- a fresh bot account for the test; ``alice``, ``bob`` -- fresh human accounts (``User``).
* ``matrix_settings`` -- Settings for the bot (access token, tmp database, no LLM).
* ``BotRunner`` -- runs the real ``MatrixBot`` with real services (SQLite log in tmp) as a task of the test loop.
"""
from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path

import pytest

from tests.matrix.client import TestUser
from tests.matrix.synapse import Synapse

KNOWLEDGE_DIR = Path(__file__).resolve().parents[2] / "knowledge"
_names = itertools.count(1)

__all__ = ["bot_user", "alice", "bob", "matrix_settings", "BotRunner", "TestUser", "db_rows"]


def _fresh(synapse: Synapse, prefix: str, displayname: str | None = None):
    return synapse.register(f"{prefix}{next(_names)}", displayname=displayname)


@pytest.fixture
def bot_user(synapse):
    return _fresh(synapse, "faqbot", displayname="问答助手")


@pytest.fixture
def alice(synapse):
    return _fresh(synapse, "alice")


@pytest.fixture
def bob(synapse):
    return _fresh(synapse, "bob")


@pytest.fixture
def matrix_settings(tmp_path, synapse, bot_user):
    from bot.app.settings import Settings

    return Settings(
        db=tmp_path / "data" / "faqbot.db",
        knowledge_dir=KNOWLEDGE_DIR,
        openai_api_key=None,
        openai_base_url=None,
        telegram_bot_token=None,
        matrix_homeserver=synapse.base_url,
        matrix_user_id=bot_user.user_id,
        matrix_access_token=bot_user.access_token,
        matrix_allowed=[],
        transports=["matrix"],
    )


class BotRunner:
    """``async with BotRunner(settings) as runner:`` -- the bot syncs (past its first sync) inside the block; on exit
    ``stop`` is set, the bot finishes and the log is drained. ``runner.bot`` is the MatrixBot."""

    def __init__(self, settings, services=None):
        self.settings = settings
        self.services = services
        self._own_services = services is None
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.bot = None

    async def __aenter__(self) -> BotRunner:
        from bot.matrix.app import MatrixBot
        from bot.app.services import build_services

        if self.services is None:
            self.services = await build_services(self.settings, with_llm=False)
        self.bot = MatrixBot(self.services, self.settings)
        self.task = asyncio.create_task(self.bot.run(self.stop))
        ready = asyncio.create_task(self.bot.ready.wait())
        await asyncio.wait({ready, self.task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            ready.cancel()
            self.task.result()  # raise what stopped it
            raise AssertionError("the bot stopped during start")
        assert ready.done(), "the bot did not finish its first sync"
        return self

    async def flush(self) -> None:
        await self.services.turn_log.flush(timeout=10)

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)
        if self._own_services:
            await self.services.aclose()


def db_rows(settings, sql: str, params=()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(settings.db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
