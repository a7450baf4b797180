"""Which rooms the Matrix bot is in, and how it joins and leaves them: the room policy.

* invites are accepted when the room is on the allow-list (``MATRIX_ALLOWED``: room ids and/or server names; empty =
  every room) and refused (left) otherwise; rooms joined some other way are checked the same way;
* with end-to-end encryption off, rooms that are or become encrypted are left with a short notice; with it on, the
  crypto state store learns each encrypted room and its members;
* the process log names group rooms by id and direct rooms by the same pseudonym the conversation log uses;
* events from before the start in rooms joined later are history, not questions (``is_history``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mautrix.api import Method, Path
from mautrix.client import Client, SyncStream
from mautrix.errors import MatrixError, MatrixRequestError
from mautrix.types import RoomEncryptionStateEventContent, StateEvent

from bot.answering import texts
from bot.answering.privacy import pseudonymize
from bot.matrix.format import room_allowed, text_content
from bot.matrix.sending import Sender

log = logging.getLogger("faqbot.matrix")

MEMBERS_TTL = 60.0  # seconds a room's member count is trusted without a membership change


class RoomPolicy:
    """The rooms the bot is in (``joined``; ``known_rooms``: joined at start, their history is behind the first sync
    token), the allow-list, and joining / leaving by it. ``encryption`` is True once end-to-end encryption runs."""

    def __init__(self, client: Client, allowed: list[str], label_key: bytes, sender: Sender):
        self.client = client
        self.allowed: list[str] = list(allowed)
        self.label_key = label_key
        self.sender = sender
        self.encryption = False
        self.start_ms = 0
        self.known_rooms: set[str] = set()
        self.joined: set[str] = set()
        self._leaving: set[str] = set()
        self._joining: set[str] = set()
        self._members: dict[str, tuple[float, int]] = {}

    @property
    def mxid(self) -> str:
        return self.client.mxid

    # ------------------------------------------------------------------ questions from a room
    def accepts(self, room_id: str) -> bool:
        """Whether events from the room are handled."""
        # Timeline events only arrive for joined rooms; a message may come before our own join was processed.
        return room_id not in self._leaving and (
            room_id in self.joined or room_id in self._joining or room_allowed(room_id, self.allowed)
        )

    def is_history(self, room_id: str, ts: int) -> bool:
        """An event from before the start in a room joined later (the first sync skipped the others' history)."""
        return room_id not in self.known_rooms and ts < self.start_ms

    async def member_count(self, room_id: str) -> int:
        cached = self._members.get(room_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < MEMBERS_TTL:
            return cached[1]
        members = await self.client.get_joined_members(room_id)
        self._members[room_id] = (now, len(members))
        return len(members)

    def label(self, room_id: str, direct: bool) -> str:
        """How the process log names a room: group rooms by id, direct rooms by the conversation log's pseudonym
        (with the log's key) -- the room id of a direct chat identifies the person in it."""
        return f"direct room {pseudonymize(room_id, self.label_key)}" if direct else room_id

    async def room_label(self, room_id: str) -> str:
        try:
            direct = await self.member_count(room_id) <= 2
        except MatrixError:
            direct = True  # unknown: name it as if private
        return self.label(room_id, direct)

    # ------------------------------------------------------------------ start
    async def resolve_aliases(self) -> None:
        resolved = []
        for entry in self.allowed:
            if entry.startswith("#"):
                try:
                    resolved.append(str((await self.client.resolve_room_alias(entry)).room_id))
                except MatrixRequestError:
                    log.warning("Matrix: could not resolve allowed room alias %s", entry)
            else:
                resolved.append(entry)
        self.allowed = resolved

    async def take_first_sync(self, rooms: dict[str, Any]) -> None:
        """Note joined rooms, settle pending invites and leave rooms that are not (or no longer) allowed or are
        encrypted (with encryption off)."""
        for room_id, room in rooms.get("join", {}).items():
            state = room.get("state", {}).get("events", []) + room.get("timeline", {}).get("events", [])
            creator = next((e.get("sender") for e in state if e.get("type") == "m.room.create"), None)
            encryption = next((e for e in state if e.get("type") == "m.room.encryption"), None)
            if not room_allowed(room_id, self.allowed, creator=creator):
                await self.leave(room_id, "not on the allow-list")
            elif encryption is not None and not self.encryption:
                await self.leave(room_id, "encrypted", notice=True)
            else:
                self.known_rooms.add(room_id)
                self.joined.add(room_id)
                if encryption is not None:
                    await self._note_encrypted(room_id, encryption)
        for room_id, room in rooms.get("invite", {}).items():
            events = room.get("invite_state", {}).get("events", [])
            invite = next(
                (e for e in events if e.get("type") == "m.room.member" and e.get("state_key") == self.mxid), {}
            )
            await self._on_invite(room_id, invite.get("sender"), events)

    # ------------------------------------------------------------------ membership events
    async def on_member(self, evt: StateEvent) -> None:
        room_id = str(evt.room_id)
        self._members.pop(room_id, None)
        if evt.state_key != self.mxid:
            return
        membership = str(evt.content.membership)
        if membership == "invite" and evt.source & SyncStream.INVITED_ROOM:
            stripped = [e.serialize() for e in (evt.unsigned.invite_room_state or [])]
            await self._on_invite(room_id, str(evt.sender), stripped)
        elif membership == "join" and evt.source & SyncStream.JOINED_ROOM:
            # Normally joined by _on_invite already; this catches joins made some other way (another device, an
            # admin API). Rooms without a server in their id are refused here when an allow-list is set.
            if room_id not in self.joined and room_id not in self._leaving and room_id not in self._joining:
                self._joining.add(room_id)
                try:
                    allowed = room_allowed(room_id, self.allowed, creator=await self._creator(room_id))
                finally:
                    self._joining.discard(room_id)
                if allowed:
                    self.joined.add(room_id)
                else:
                    await self.leave(room_id, "not on the allow-list")
        elif membership in ("leave", "ban"):
            self.joined.discard(room_id)
            self.known_rooms.discard(room_id)  # a later re-join must not replay what happened meanwhile
            self._leaving.discard(room_id)

    async def _on_invite(self, room_id: str, inviter: str | None, stripped: list[dict[str, Any]]) -> None:
        if room_id in self.joined or room_id in self._joining:
            return
        creator = next((e.get("sender") for e in stripped if e.get("type") == "m.room.create"), None)
        direct = invite_is_direct(stripped, self.mxid)
        if not room_allowed(room_id, self.allowed, creator=creator):
            log.info("Matrix: refusing an invite to %s (not on the allow-list)", self.label(room_id, direct))
            await self.leave(room_id, "not on the allow-list")
            return
        # The sync carrying our join (and messages sent before it) may be handled before this request returns.
        self._joining.add(room_id)
        try:
            await self.client.join_room_by_id(room_id)
        except MatrixRequestError as exc:
            log.warning("Matrix: could not join %s: %s", self.label(room_id, direct), exc)
            return
        finally:
            self._joining.discard(room_id)
        self.joined.add(room_id)
        log.info("Matrix: joined %s", self.label(room_id, direct))  # user ids stay out of the log
        encryption = next((e for e in stripped if e.get("type") == "m.room.encryption"), None)
        if encryption is not None:
            if not self.encryption:
                await self.leave(room_id, "encrypted", notice=True)
                return
            await self._note_encrypted(room_id, encryption)
        await self.sender.send(room_id, text_content(texts.MATRIX_WELCOME))

    async def on_encryption(self, evt: StateEvent) -> None:
        """A room the bot is in switched encryption on: from now on it is an encrypted room (or, with encryption
        off, one the bot leaves with a notice)."""
        room_id = str(evt.room_id)
        if room_id not in self.joined:
            return
        if not self.encryption:
            await self.leave(room_id, "encrypted", notice=True)
        else:
            await self._note_encrypted(room_id, {"content": evt.content.serialize()})

    async def _note_encrypted(self, room_id: str, event: dict[str, Any]) -> None:
        """Prepare the crypto state store for an encrypted room the bot is in (on joining, and at start for what
        changed while it was down). The crypto machine renews a room's keys on membership changes only in rooms it
        knows are encrypted, and it does not renew them when an invited member joins: the keys must reach invited
        members too, so the store gets the full member list (joined and invited), not only the joined members."""
        await self.client.state_store.set_encryption_info(
            room_id, RoomEncryptionStateEventContent.deserialize(event.get("content") or {})
        )
        try:
            await self.client.get_members(room_id)  # the store-updating client keeps them (membership kept in sync)
        except MatrixError as exc:
            log.warning("Matrix: could not load the members of %s: %s", await self.room_label(room_id), exc)

    async def _creator(self, room_id: str) -> str | None:
        """The creator of a joined room (its server decides the allow-list for room ids without a server name)."""
        if not self.allowed or ":" in room_id:
            return None
        try:
            raw = await self.client.api.request(
                Method.GET, Path.v3.rooms[room_id].state["m.room.create"], query_params={"format": "event"}
            )
        except MatrixError:
            return None
        return raw.get("sender") if isinstance(raw, dict) else None

    async def leave(self, room_id: str, why: str, *, notice: bool = False) -> None:
        if room_id in self._leaving:
            return
        self._leaving.add(room_id)
        self.joined.discard(room_id)
        label = await self.room_label(room_id)
        if notice:
            await self.sender.send(room_id, text_content(texts.MATRIX_ENCRYPTED_ROOM))
        try:
            await self.client.leave_room(room_id, reason=why)
            log.info("Matrix: left %s (%s)", label, why)
        except MatrixRequestError as exc:
            log.warning("Matrix: could not leave %s: %s", label, exc)


def invite_is_direct(stripped: list[dict[str, Any]], mxid: str) -> bool:
    """A direct chat, by the inviter's ``is_direct`` flag on the bot's invite (what Element sets), or a room of at
    most the inviter and the bot."""
    me = next((e for e in stripped if e.get("type") == "m.room.member" and e.get("state_key") == mxid), {})
    if (me.get("content") or {}).get("is_direct"):
        return True
    joined = [
        e for e in stripped if e.get("type") == "m.room.member" and (e.get("content") or {}).get("membership") == "join"
    ]
    return 0 < len(joined) <= 1
