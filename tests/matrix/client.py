"""A test user on the real Synapse: a mautrix ``Client`` plus a background /sync that collects room events, so tests
can wait for what the bot sends (``wait_for``) or check it sent nothing (``quiet``).

``TestUser(..., crypto_dir=path)`` makes it an encrypting client, set up with mautrix's crypto like any mautrix
client (an ``OlmMachine`` on an SQLite store in ``path``): it publishes device keys, sends encrypted messages in
encrypted rooms, and decrypts what arrives there -- such events are collected decrypted, with ``"encrypted": True``.
``send_undecryptable`` sends a message whose keys go to nobody but the sender."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mautrix.client import Client, DecryptionDispatcher
from mautrix.errors import SessionNotFound
from mautrix.types import EncryptedEvent, EventType, RoomCreatePreset

from tests.matrix.synapse import User

Predicate = Callable[[dict[str, Any]], bool]


class TestUser:
    __test__ = False  # not a pytest test class

    def __init__(self, base_url: str, user: User, *, crypto_dir: Path | None = None):
        self.user = user
        self.user_id = user.user_id
        self.client = Client(mxid=user.user_id, device_id=user.device_id, base_url=base_url, token=user.access_token)
        self.events: list[dict[str, Any]] = []  # timeline events of joined rooms, each with "room_id"
        self.undecryptable: list[dict[str, Any]] = []  # encrypted events this client could not decrypt
        self.to_device: list[dict[str, Any]] = []  # to-device events as they came (key requests are plaintext)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None
        self._since: str | None = None
        self.crypto_dir = crypto_dir
        self.crypto = None
        self._dbs: list = []

    async def __aenter__(self) -> TestUser:
        if self.crypto_dir is not None:
            await self._start_crypto()
        first = await self.client.sync(timeout=0)
        if self.crypto is not None:
            await asyncio.gather(*self.client.handle_sync(first), return_exceptions=True)
        self._since = first.get("next_batch")
        self._task = asyncio.create_task(self._sync_loop())
        return self

    async def _start_crypto(self) -> None:
        from mautrix.crypto import OlmMachine, PgCryptoStateStore, PgCryptoStore
        from mautrix.util.async_db import Database

        path = Path(self.crypto_dir) / f"{self.user_id.strip('@').replace(':', '_')}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        db = Database.create(f"sqlite:{path}", upgrade_table=PgCryptoStore.upgrade_table)
        state_db = Database.create(f"sqlite:{path}", upgrade_table=PgCryptoStateStore.upgrade_table)
        state_db.override_pool(db)
        await db.start()
        await state_db.start()
        self._dbs = [state_db, db]
        store = PgCryptoStore(account_id=self.user_id, pickle_key="test", db=db)
        await store.open()
        self.client.state_store = PgCryptoStateStore(state_db)
        self.crypto = OlmMachine(
            self.client, store, self.client.state_store, log=logging.getLogger("tests.matrix.crypto")
        )
        await self.crypto.load()
        await store.put_device_id(self.user.device_id)
        await self.crypto.share_keys()
        self.client.crypto = self.crypto
        self.client.remove_dispatcher(DecryptionDispatcher)  # decrypted below, into self.events

    async def __aexit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.api.session.close()
        if self.crypto is not None:
            await self.crypto.crypto_store.close()
        for db in self._dbs:
            await db.stop()

    async def _sync_loop(self) -> None:
        while True:
            data = await self.client.sync(since=self._since, timeout=5000)
            self._since = data.get("next_batch")
            self.to_device.extend(data.get("to_device", {}).get("events", []))
            if self.crypto is not None:
                await asyncio.gather(
                    *self.client.handle_sync(data), return_exceptions=True
                )  # keys, device lists, room state
            new = []
            for room_id, room in data.get("rooms", {}).get("join", {}).items():
                for e in room.get("timeline", {}).get("events", []):
                    e = {**e, "room_id": room_id}
                    if e.get("type") == "m.room.encrypted" and self.crypto is not None:
                        e = await self._decrypt(e)
                    new.append(e)
            if new:
                async with self._changed:
                    self.events.extend(new)
                    self._changed.notify_all()

    async def _decrypt(self, raw: dict[str, Any]) -> dict[str, Any]:
        evt = EncryptedEvent.deserialize(raw)
        try:
            try:
                decrypted = await self.crypto.decrypt_megolm_event(evt)
            except SessionNotFound as exc:
                if not await self.crypto.wait_for_session(evt.room_id, exc.session_id, timeout=5):
                    raise
                decrypted = await self.crypto.decrypt_megolm_event(evt)
        except Exception as exc:  # kept as it came, so a test sees what could not be read
            self.undecryptable.append(raw)
            return {**raw, "decryption_error": repr(exc)}
        return {**decrypted.serialize(), "room_id": raw["room_id"], "encrypted": True}

    # ------------------------------------------------------------------ waiting
    async def wait_for(self, predicate: Predicate, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                for e in self.events:
                    if predicate(e):
                        return e
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching event within {timeout} s; seen: {self.summary()}")
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    pass

    async def quiet(self, predicate: Predicate, seconds: float = 1.0) -> None:
        """Assert that no matching event arrives within ``seconds``."""
        try:
            e = await self.wait_for(predicate, timeout=seconds)
        except AssertionError:
            return
        raise AssertionError(f"unexpected event: {e}")

    def summary(self) -> list[tuple[str, str, str]]:
        return [
            (e.get("sender", ""), e.get("type", ""), str(e.get("content", {}).get("body", ""))[:40])
            for e in self.events
        ]

    # ------------------------------------------------------------------ actions
    async def create_room(
        self,
        invite: list[str] = (),
        *,
        direct: bool = False,
        name: str | None = None,
        encrypted: bool = False,
        public: bool = False,
    ) -> str:
        initial_state = []
        if encrypted:
            initial_state.append(
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
            )
        preset = RoomCreatePreset.PUBLIC if public else RoomCreatePreset.PRIVATE
        return str(
            await self.client.create_room(
                invitees=list(invite), is_direct=direct, name=name, initial_state=initial_state, preset=preset
            )
        )

    async def join(self, room_id: str) -> None:
        await self.client.join_room_by_id(room_id)

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.client.invite_user(room_id, user_id)

    async def send(self, room_id: str, body: str, **extra: Any) -> str:
        content = {"msgtype": "m.text", "body": body, **extra}
        return str(await self.client.send_message_event(room_id, EventType.ROOM_MESSAGE, content))

    async def send_undecryptable(self, room_id: str, body: str) -> tuple[str, str]:
        """An encrypted message whose Megolm session is shared with this user's own devices only (a client that
        failed to send its keys): nobody else can decrypt it. The next normal message starts a new session.
        Returns the event id and the Megolm session id."""
        await self.crypto.crypto_store.remove_outbound_group_session(room_id)
        await self.crypto.share_group_session(room_id, [self.user_id])
        content = await self.crypto.encrypt_megolm_event(
            room_id, EventType.ROOM_MESSAGE, {"msgtype": "m.text", "body": body}
        )
        event_id = await self.client.send_message_event(
            room_id, EventType.ROOM_ENCRYPTED, content, disable_encryption=True
        )
        await self.crypto.crypto_store.remove_outbound_group_session(room_id)
        return str(event_id), str(content.session_id)

    async def react_encrypted(self, room_id: str, event_id: str, key: str) -> str:
        """A reaction sent encrypted, as Element does in encrypted rooms (mautrix itself sends reactions in clear)."""
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        encrypted = await self.client.encrypt(room_id, EventType.REACTION, content)
        return str(
            await self.client.send_message_event(room_id, EventType.ROOM_ENCRYPTED, encrypted, disable_encryption=True)
        )

    async def redact(self, room_id: str, event_id: str) -> str:
        return str(await self.client.redact(room_id, event_id))

    def notifications(self, synapse) -> list[dict[str, Any]]:
        """This user's notifications as the homeserver's push rules decided them (``/notifications``)."""
        return synapse.request("GET", "/_matrix/client/v3/notifications?limit=100", token=self.user.access_token)[
            "notifications"
        ]

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        return str(await self.client.react(room_id, event_id, key))

    async def members(self, room_id: str) -> set[str]:
        return {str(u) for u in await self.client.get_joined_members(room_id)}

    async def wait_member(self, room_id: str, user_id: str, present: bool = True, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while (user_id in await self.members(room_id)) != present:
            if time.monotonic() > deadline:
                raise AssertionError(f"{user_id} {'did not join' if present else 'is still in'} {room_id}")
            await asyncio.sleep(0.05)

    async def membership_of(self, room_id: str, user_id: str) -> str | None:
        try:
            evt = await self.client.get_state_event(room_id, EventType.ROOM_MEMBER, user_id)
        except Exception:
            return None
        return str(evt.membership)


def in_thread(root: str) -> dict[str, Any]:
    """The relation Element sends with a message typed in the thread of ``root`` (falling back to a reply to it)."""
    return {
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": root},
        }
    }


def from_bot(bot_id: str, room_id: str | None = None, *, reply_to: str | None = None) -> Predicate:
    """Match an m.room.message from the bot (in ``room_id``, replying to ``reply_to``)."""

    def match(e: dict[str, Any]) -> bool:
        if e.get("sender") != bot_id or e.get("type") != "m.room.message":
            return False
        if room_id is not None and e.get("room_id") != room_id:
            return False
        if reply_to is not None:
            rel = e.get("content", {}).get("m.relates_to") or {}
            if (rel.get("m.in_reply_to") or {}).get("event_id") != reply_to:
                return False
        return True

    return match
