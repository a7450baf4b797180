"""Sending to a Matrix room: messages with retries that never duplicate, and "typing…" while an answer is made."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mautrix.client import Client
from mautrix.errors import CryptoError, MatrixConnectionError, MatrixError, MatrixRequestError, MLimitExceeded
from mautrix.types import EventType

log = logging.getLogger("faqbot.matrix")

SEND_ATTEMPTS = 4
# Answers and replies to a person are m.text (see bot/matrix/app.py); only unsolicited messages are m.notice.
ANSWER_MSGTYPE = "m.text"
TYPING_MS = 30_000


class Sender:
    """Sends messages to rooms; ``label`` names a room in the process log (see RoomPolicy.room_label)."""

    def __init__(self, client: Client, label: Callable[[str], Awaitable[str]]):
        self.client = client
        self.label = label

    async def send(self, room_id: str, content: dict[str, Any]) -> str | None:
        """Send a message; retries rate limits and unreachable-server errors with the same transaction id (so a
        retry never duplicates). Returns the event id, or None when it could not be sent."""
        txn_id = self.client.api.get_txn_id()
        delay = 1.0
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                return str(
                    await self.client.send_message_event(room_id, EventType.ROOM_MESSAGE, content, txn_id=txn_id)
                )
            except (MLimitExceeded, MatrixConnectionError) as exc:
                if attempt == SEND_ATTEMPTS:
                    log.error("Matrix: giving up sending to %s: %s", await self.label(room_id), exc)
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 8.0)
            except MatrixRequestError as exc:
                log.error("Matrix: could not send to %s: %s", await self.label(room_id), exc)
                return None
            except CryptoError as exc:
                log.error("Matrix: could not encrypt for %s: %s", await self.label(room_id), exc)
                return None
        return None

    def typing(self, room_id: str) -> Typing:
        return Typing(self.client, room_id)


class Typing:
    """Show "typing…" in a room while the answer is worked on (refreshed; cleared at the end)."""

    def __init__(self, client: Client, room_id: str):
        self.client, self.room_id = client, room_id
        self._task: asyncio.Task | None = None

    async def _keep(self) -> None:
        while True:
            try:
                await self.client.set_typing(self.room_id, TYPING_MS)
            except MatrixError as exc:
                log.debug("Matrix: typing notification failed: %s", exc)
            await asyncio.sleep(TYPING_MS / 1000 * 0.6)

    async def __aenter__(self) -> Typing:
        self._task = asyncio.create_task(self._keep())
        return self

    async def __aexit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.client.set_typing(self.room_id, 0)
        except MatrixError as exc:
            log.debug("Matrix: clearing the typing notification failed: %s", exc)
