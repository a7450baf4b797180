"""``BotRunner``: the real ``MatrixBot`` with real services (SQLite log in tmp) as a task of the test loop; and
``db_rows`` to read that log back."""

from __future__ import annotations

import asyncio
import sqlite3


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
        from bot.app.services import build_services
        from bot.matrix.app import MatrixBot

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
