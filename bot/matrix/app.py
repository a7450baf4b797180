"""The Matrix transport: one bot account answering in its rooms (encrypted ones too) through the shared answering core.

``run_matrix(services, settings, stop)`` logs in, skips everything that happened before it started, then syncs until
``stop`` is set; it then stops syncing, lets the answers being worked on finish (bounded), and returns. Behaviour:

* invites are accepted when the room is on the allow-list (``MATRIX_ALLOWED``: room ids and/or server names; empty =
  every room) and refused (left) otherwise;
* encrypted rooms work like the others when end-to-end encryption is on (``MATRIX_E2EE``; default: on when the
  crypto dependency is installed; ``bot.matrix.e2ee``): questions are decrypted, everything the bot sends there is
  encrypted. A message it cannot decrypt gets a request to send it again (every one in a direct room, once per
  sender's key session in a group) and its keys are requested. With encryption off, rooms that are or become
  encrypted are left with a short notice;
* direct rooms (the bot and one person) get an answer to every text message; group rooms only to messages that
  mention the bot (``m.mentions``, a pill, its user id or display name in the text), reply to one of its messages,
  or answer its numbered offer with a bare number;
* answers are ``m.text`` replies (``m.in_reply_to``) with an intentional mention of the asker (``m.mentions``), so
  the asker's client notifies them (the default push rule for ``m.notice`` silences notices before the mention rule
  is reached); only unsolicited messages (the welcome, the encrypted-room notice) are ``m.notice``. Answers stay
  in the thread when the question was in one, with a plain ``body`` and an HTML ``formatted_body``; a "did you
  mean" offer is a numbered list answered by number (0 = none of these, logged as feedback 'none' on the offer);
* 👍/👎 reactions on an answer are logged as feedback on its turn; removing the reaction (a redaction) withdraws it
  (the person's other thumbs reaction on that answer, if any, counts again); typing notifications run while
  answering;
* the process log names group rooms by id and direct rooms by the same pseudonym the conversation log uses;
* one ``Conversation`` per (room, user), channel "matrix", chat type "direct" or "group"; the turns go to the log
  through the core.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from email.utils import parsedate_to_datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache
from mautrix.api import Method, Path
from mautrix.client import Client, InternalEventType, SyncStream
from mautrix.client.state_store import MemorySyncStore
from mautrix.errors import MatrixConnectionError, MatrixError, MatrixInvalidToken, MatrixRequestError, MLimitExceeded
from mautrix.errors import CryptoError, DecryptionError, SessionNotFound
from mautrix.types import (
    BaseMessageEventContentFuncs,
    EncryptedEvent,
    EventType,
    MessageType,
    ReactionEvent,
    RedactionEvent,
    RoomEncryptionStateEventContent,
    StateEvent,
)

from bot.answering import texts
from bot.matrix.curation import MatrixCuration
from bot.answering.follow_ups import follow_up, offers_notify
from bot.matrix.format import (
    looks_like_pick,
    mentions_user,
    reaction_kind,
    reply_content,
    room_allowed,
    strip_mention,
    text_content,
)
from bot.matrix.session import (
    MatrixConfigError,
    StoredSession,
    authenticate,
    delete_device,
    remember_recovery_key,
)
from bot.answering.privacy import pseudonymize
from bot.answering.types import Conversation, Reason, Reply, Route

try:  # python-olm (the `matrix` extra); without it encrypted rooms get the notice-and-leave behaviour
    from bot.matrix.e2ee import E2EE, StoreLost, crypto_store_path
except ImportError as _no_crypto:  # pragma: no cover - the test environment installs the extra
    E2EE = None
    _CRYPTO_MISSING = str(_no_crypto)
else:
    _CRYPTO_MISSING = ""

if TYPE_CHECKING:
    from mautrix.types import MessageEvent

    from bot.app.settings import Settings
    from bot.app.services import Services

log = logging.getLogger("faqbot.matrix")

CHANNEL = "matrix"
TEXT_TYPES = (MessageType.TEXT, MessageType.EMOTE)
# Filters: the first sync only needs the room list, invites and each room's state (no history); the loop keeps up to
# 50 timeline events per room per sync. Presence and account data are not used.
_NO_EXTRAS = {"presence": {"types": []}, "account_data": {"types": []}}


def first_sync_filter() -> str:
    """A filter unique to this start. Synapse answers an identical /sync request from a response cache for
    ``sync_response_cache_duration`` (2 min by default): a bot restarted within that time would get the previous
    start's snapshot and token, and then replay everything since. A never-matching ``not_types`` entry with a nonce
    makes the request new."""
    nonce = f"org.faqbot.start.{secrets.token_hex(8)}"
    return json.dumps({**_NO_EXTRAS, "room": {"timeline": {"limit": 1, "not_types": [nonce]},
                                              "state": {"lazy_load_members": True},
                                              "ephemeral": {"types": []}, "account_data": {"types": []}}})


LOOP_FILTER = json.dumps({**_NO_EXTRAS, "room": {"timeline": {"limit": 50}, "state": {"lazy_load_members": True},
                                                 "ephemeral": {"types": []}, "account_data": {"types": []}}})
# In rooms joined after the first sync, events older than the start are history, not questions. Start time is on the
# homeserver's clock when its Date header differs from this machine's by more than this.
CLOCK_SLACK_MS = 2_000
MEMBERS_TTL = 60.0  # seconds a room's member count is trusted without a membership change
TYPING_MS = 30_000
MAX_CONVERSATIONS = 10_000
MAX_ANSWERS = 10_000  # answer event id -> turn id, for reactions
SEND_ATTEMPTS = 4
ANSWER_MSGTYPE = "m.text"  # answers to a person (see the module docstring); unsolicited messages stay m.notice
# The sync fields that carry encryption keys and device changes (handled from the first sync too: keys sent
# while the bot was down arrive there).
_CRYPTO_SYNC_FIELDS = ("to_device", "device_lists", "device_one_time_keys_count",
                       "device_unused_fallback_key_types")


def e2ee_wanted(settings: Settings) -> bool:
    """MATRIX_E2EE, defaulting to whether the crypto dependency is installed."""
    return E2EE is not None if settings.matrix_e2ee is None else bool(settings.matrix_e2ee)


@dataclass
class _ConvState:
    conv: Conversation
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    offer_turn_id: str | None = None  # the turn that made the current numbered offer


class MatrixBot:
    def __init__(self, services: Services, settings: Settings, *, client: Client | None = None):
        if not settings.matrix_homeserver:
            raise MatrixConfigError("MATRIX_HOMESERVER is not set")
        self.services = services
        self.settings = settings
        self.answerer = services.answerer
        self.client = client or Client(base_url=settings.matrix_homeserver, sync_store=MemorySyncStore())
        self.e2ee_on = e2ee_wanted(settings)
        if self.e2ee_on and E2EE is None:
            raise MatrixConfigError(f"MATRIX_E2EE=true needs the crypto dependency (pip install 'faqbot[matrix]'): "
                                    f"{_CRYPTO_MISSING}")
        self.e2ee: E2EE | None = None  # set once encryption is running
        self._crypto: E2EE | None = None  # the store, opened by the first start attempt
        self.session: StoredSession | None = None
        # Pseudonyms of direct rooms in the process log: the log's own key, else one for this process.
        self._label_key = services.secret or secrets.token_bytes(32)
        self.display_name: str | None = None
        self.allowed: list[str] = list(settings.matrix_allowed)
        self.start_ms = 0
        self.known_rooms: set[str] = set()  # joined at start: their history is behind the first sync token
        self.joined: set[str] = set()
        self._leaving: set[str] = set()
        self._joining: set[str] = set()
        self._convs: LRUCache = LRUCache(MAX_CONVERSATIONS)
        self.answers: LRUCache = LRUCache(MAX_ANSWERS)  # bot answer event id -> turn id
        self.curation = MatrixCuration(services, settings)  # admin commands, 通知我 (bot/matrix/curation.py)
        self._bot_events: LRUCache = LRUCache(MAX_ANSWERS)  # event id -> sent by the bot? (reply detection)
        self._reactions: LRUCache = LRUCache(MAX_ANSWERS)  # reaction event id -> (answer id, sender, kind)
        self._thumbs: LRUCache = LRUCache(MAX_ANSWERS)  # (answer id, sender) -> kinds of their present reactions
        self._redacted: LRUCache = LRUCache(MAX_ANSWERS)  # redacted event ids not seen (yet) as reactions
        self._asked_resend: LRUCache = LRUCache(MAX_ANSWERS)  # (room, sender, key session) already asked about
        self._members: dict[str, tuple[float, int]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._sync_error: BaseException | None = None
        self.ready = asyncio.Event()  # set once syncing runs (tests wait on it)

    @property
    def mxid(self) -> str:
        return self.client.mxid

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        try:
            if not await self._until_stopped(self._connect, stop):
                return
            self.client.add_event_handler(EventType.ROOM_MESSAGE, self._tracked(self._on_message))
            self.client.add_event_handler(EventType.REACTION, self._tracked(self._on_reaction))
            self.client.add_event_handler(EventType.ROOM_REDACTION, self._tracked(self._on_redaction))
            if self.e2ee is not None:
                self.client.add_event_handler(EventType.ROOM_ENCRYPTED, self._tracked(self._on_encrypted))
            self.client.add_event_handler(EventType.ROOM_MEMBER, self._tracked(self._on_member))
            self.client.add_event_handler(EventType.ROOM_ENCRYPTION, self._tracked(self._on_encryption),
                                          sync_stream=SyncStream.JOINED_ROOM)
            self.client.add_event_handler(InternalEventType.SYNC_STOPPED, self._on_sync_stopped)
            sync_task = self.client.start(LOOP_FILTER)
            self.ready.set()
            self.services.followers[CHANNEL] = self._follow_ups  # after any reload (bot/answering/follow_ups.py)
            await self._follow_ups()  # a restart is a reload too
            log.info("Matrix: %s is answering in %d room(s) (end-to-end encryption %s)", self.mxid, len(self.joined),
                     "on" if self.e2ee is not None else "off")
            stop_task = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({sync_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_task.cancel()
        finally:
            self.services.followers.pop(CHANNEL, None)
            await self._shutdown()
        if self._sync_error is not None and not stop.is_set():
            raise RuntimeError(f"Matrix sync stopped: {self._sync_error!r}") from self._sync_error

    async def _follow_ups(self) -> None:
        async def send(room_id: str, text: str) -> None:
            if await self._send(room_id, text_content(text, msgtype=ANSWER_MSGTYPE)) is None:
                raise RuntimeError("not sent")

        try:
            await follow_up(self.answerer, self.settings.db, CHANNEL, send)
        except Exception:
            log.exception("Matrix follow-up answers failed")

    async def _until_stopped(self, step, stop: asyncio.Event) -> bool:
        """Run ``step`` until it succeeds, retrying unreachable-homeserver errors with backoff; False if ``stop`` was
        set first. Configuration errors and rejected credentials are raised."""
        delay = 1.0
        while not stop.is_set():
            try:
                await step()
                return True
            except (MatrixConfigError, MatrixInvalidToken):
                raise
            except (MatrixConnectionError, OSError, asyncio.TimeoutError) as exc:
                log.warning("Matrix: homeserver unreachable (%s); retrying in %.0f s", type(exc).__name__, delay)
            except MatrixRequestError as exc:
                if exc.http_status < 500 and not isinstance(exc, MLimitExceeded):
                    raise
                log.warning("Matrix: homeserver error %s; retrying in %.0f s", exc.http_status, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 60.0)
        return False

    async def _connect(self) -> None:
        self.session = await authenticate(self.client, self.settings)
        if self.e2ee_on and self.e2ee is None:
            await self._start_e2ee()
        try:
            self.display_name = await self.client.get_displayname(self.mxid)
        except MatrixError:
            self.display_name = None
        await self._resolve_aliases()
        await self._first_sync()

    async def _start_e2ee(self) -> None:
        """Open the crypto store and publish this device's keys; a lost store with a password to log in with gets
        a new device (its keys are new anyway), else new keys for the same device. Then cross-sign the device."""
        if self._crypto is None:  # kept across retries of the start; closed at shutdown
            self._crypto = E2EE(self.client, crypto_store_path(self.settings))
            await self._crypto.open()
        e2ee = self._crypto
        try:
            await e2ee.start(allow_lost=not self.settings.has_matrix_password)
        except StoreLost:
            old_device = str(self.client.device_id)
            log.warning("Matrix: the crypto store of device %s was lost; logging in as a new device", old_device)
            self.session = await authenticate(self.client, self.settings, new_device=True)
            await e2ee.start(allow_lost=True)
            # The old device's keys are gone for good: remove it, so nobody keeps encrypting for it.
            if await delete_device(self.client, self.settings, old_device):
                log.info("Matrix: deleted the old device %s", old_device)
        configured = self.settings.matrix_recovery_key
        created = await e2ee.cross_sign(self.session.recovery_key
                                        or (configured.get_secret_value() if configured is not None else None))
        if created:
            self.session = remember_recovery_key(self.settings, self.session, created)
        self.e2ee = e2ee

    async def _resolve_aliases(self) -> None:
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

    async def _first_sync(self) -> None:
        """Take the starting point: note joined rooms, settle pending invites and leave rooms that are not (or no
        longer) allowed or are encrypted. Nothing of this sync is answered: it is all from before the start."""
        self.start_ms = await self._start_time_ms()
        data = await self.client.sync(timeout=0, filter_id=first_sync_filter())
        rooms = data.get("rooms", {})
        for room_id, room in rooms.get("join", {}).items():
            state = room.get("state", {}).get("events", []) + room.get("timeline", {}).get("events", [])
            creator = next((e.get("sender") for e in state if e.get("type") == "m.room.create"), None)
            encryption = next((e for e in state if e.get("type") == "m.room.encryption"), None)
            if not room_allowed(room_id, self.allowed, creator=creator):
                await self._leave(room_id, "not on the allow-list")
            elif encryption is not None and self.e2ee is None:
                await self._leave(room_id, "encrypted", notice=True)
            else:
                self.known_rooms.add(room_id)
                self.joined.add(room_id)
                if encryption is not None:
                    await self._note_encrypted(room_id, encryption)
        for room_id, room in rooms.get("invite", {}).items():
            events = room.get("invite_state", {}).get("events", [])
            invite = next((e for e in events if e.get("type") == "m.room.member" and e.get("state_key") == self.mxid),
                          {})
            await self._on_invite(room_id, invite.get("sender"), events)
        if self.e2ee is not None:
            # Room keys and device changes since the last run are in this sync: hand them to the crypto machine.
            self.client.handle_sync({k: data[k] for k in _CRYPTO_SYNC_FIELDS if k in data})
        await self.client.sync_store.put_next_batch(data.get("next_batch"))

    async def _start_time_ms(self) -> int:
        """Now, on the homeserver's clock (events carry its timestamps): this machine's clock, unless the server's
        ``Date`` header says the two differ by more than CLOCK_SLACK_MS."""
        local = int(time.time() * 1000)
        try:
            url = self.client.api.base_url.with_path("/_matrix/client/versions")
            async with self.client.api.session.get(url) as resp:
                date = resp.headers.get("Date")
            server = int(parsedate_to_datetime(date).timestamp() * 1000) if date else None
        except Exception:  # no usable Date header: trust this machine's clock
            server = None
        if server is not None and abs(server - local) > CLOCK_SLACK_MS:
            log.warning("Matrix: the homeserver's clock differs from this machine's by %.1f s", (server - local) / 1000)
            return server
        return local

    async def _shutdown(self) -> None:
        self.client.stop()
        # Handlers scheduled by the last sync start on the next loop iterations; let them register, then wait.
        for _ in range(3):
            await asyncio.sleep(0)
        budget = self.settings.llm_budget + 10.0 if self.settings.llm_enabled else 15.0
        deadline = time.monotonic() + budget
        while self._tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("Matrix: %d answer(s) still running at shutdown; cancelled", len(self._tasks))
                for t in list(self._tasks):
                    t.cancel()
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
                break
            await asyncio.wait(list(self._tasks), timeout=remaining)
        if self._crypto is not None:
            try:
                await self._crypto.close()
            except Exception:  # pragma: no cover - the store commits as it goes; closing is tidying up
                log.warning("Matrix: closing the crypto store failed", exc_info=True)
        try:
            await self.client.api.session.close()
        except Exception:  # pragma: no cover - closing never matters more than stopping
            log.debug("closing the HTTP session failed", exc_info=True)

    def _tracked(self, handler):
        """Wrap an event handler so shutdown can wait for the ones running."""

        async def run(evt) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                await handler(evt)
            except Exception:
                log.exception("Matrix: handling %s failed", getattr(evt, "type", "an event"))
            finally:
                if task is not None:
                    self._tasks.discard(task)

        return run

    async def _on_sync_stopped(self, data: dict[str, Any]) -> None:
        error = data.get("error") if isinstance(data, dict) else None
        if error is not None:
            self._sync_error = error

    # ------------------------------------------------------------------ rooms
    async def _on_member(self, evt: StateEvent) -> None:
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
                    await self._leave(room_id, "not on the allow-list")
        elif membership in ("leave", "ban"):
            self.joined.discard(room_id)
            self.known_rooms.discard(room_id)  # a later re-join must not replay what happened meanwhile
            self._leaving.discard(room_id)

    async def _on_invite(self, room_id: str, inviter: str | None, stripped: list[dict[str, Any]]) -> None:
        if room_id in self.joined or room_id in self._joining:
            return
        creator = next((e.get("sender") for e in stripped if e.get("type") == "m.room.create"), None)
        direct = _invite_is_direct(stripped, self.mxid)
        if not room_allowed(room_id, self.allowed, creator=creator):
            log.info("Matrix: refusing an invite to %s (not on the allow-list)", self._label(room_id, direct))
            await self._leave(room_id, "not on the allow-list")
            return
        # The sync carrying our join (and messages sent before it) may be handled before this request returns.
        self._joining.add(room_id)
        try:
            await self.client.join_room_by_id(room_id)
        except MatrixRequestError as exc:
            log.warning("Matrix: could not join %s: %s", self._label(room_id, direct), exc)
            return
        finally:
            self._joining.discard(room_id)
        self.joined.add(room_id)
        log.info("Matrix: joined %s", self._label(room_id, direct))  # user ids stay out of the log
        encryption = next((e for e in stripped if e.get("type") == "m.room.encryption"), None)
        if encryption is not None:
            if self.e2ee is None:
                await self._leave(room_id, "encrypted", notice=True)
                return
            await self._note_encrypted(room_id, encryption)
        await self._send(room_id, text_content(texts.MATRIX_WELCOME))

    async def _note_encrypted(self, room_id: str, event: dict[str, Any]) -> None:
        """Prepare the crypto state store for an encrypted room the bot is in (on joining, and at start for what
        changed while it was down). The crypto machine renews a room's keys on membership changes only in rooms it
        knows are encrypted, and it does not renew them when an invited member joins: the keys must reach invited
        members too, so the store gets the full member list (joined and invited), not only the joined members."""
        await self.client.state_store.set_encryption_info(
            room_id, RoomEncryptionStateEventContent.deserialize(event.get("content") or {}))
        try:
            await self.client.get_members(room_id)  # the store-updating client keeps them (membership kept in sync)
        except MatrixError as exc:
            log.warning("Matrix: could not load the members of %s: %s", await self._room_label(room_id), exc)

    async def _creator(self, room_id: str) -> str | None:
        """The creator of a joined room (its server decides the allow-list for room ids without a server name)."""
        if not self.allowed or ":" in room_id:
            return None
        try:
            raw = await self.client.api.request(Method.GET, Path.v3.rooms[room_id].state["m.room.create"],
                                                query_params={"format": "event"})
        except MatrixError:
            return None
        return raw.get("sender") if isinstance(raw, dict) else None

    async def _on_encryption(self, evt: StateEvent) -> None:
        """A room the bot is in switched encryption on: from now on it is an encrypted room (or, with encryption
        off, one the bot leaves with a notice)."""
        room_id = str(evt.room_id)
        if room_id not in self.joined:
            return
        if self.e2ee is None:
            await self._leave(room_id, "encrypted", notice=True)
        else:
            await self._note_encrypted(room_id, {"content": evt.content.serialize()})

    async def _leave(self, room_id: str, why: str, *, notice: bool = False) -> None:
        if room_id in self._leaving:
            return
        self._leaving.add(room_id)
        self.joined.discard(room_id)
        label = await self._room_label(room_id)
        if notice:
            await self._send(room_id, text_content(texts.MATRIX_ENCRYPTED_ROOM))
        try:
            await self.client.leave_room(room_id, reason=why)
            log.info("Matrix: left %s (%s)", label, why)
        except MatrixRequestError as exc:
            log.warning("Matrix: could not leave %s: %s", label, exc)

    def _label(self, room_id: str, direct: bool) -> str:
        """How the process log names a room: group rooms by id, direct rooms by the conversation log's pseudonym
        (with the log's key) -- the room id of a direct chat identifies the person in it."""
        return f"direct room {pseudonymize(room_id, self._label_key)}" if direct else room_id

    async def _room_label(self, room_id: str) -> str:
        try:
            direct = await self._member_count(room_id) <= 2
        except MatrixError:
            direct = True  # unknown: name it as if private
        return self._label(room_id, direct)

    async def _member_count(self, room_id: str) -> int:
        cached = self._members.get(room_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < MEMBERS_TTL:
            return cached[1]
        members = await self.client.get_joined_members(room_id)
        self._members[room_id] = (now, len(members))
        return len(members)

    async def _sent_by_bot(self, room_id: str, event_id: str) -> bool:
        if event_id in self.answers:
            return True
        known = self._bot_events.get(event_id)
        if known is not None:
            return known
        try:
            evt = await self.client.get_event(room_id, event_id)
            mine = str(evt.sender) == self.mxid
        except MatrixError:
            mine = False
        self._bot_events[event_id] = mine
        return mine

    # ------------------------------------------------------------------ messages
    def _state(self, room_id: str, user_id: str) -> _ConvState:
        key = (room_id, user_id)
        state = self._convs.get(key)
        if state is None:
            state = self._convs[key] = _ConvState(Conversation(channel=CHANNEL, chat_id=room_id, chat_type="group",
                                                               user_id=user_id))
        return state

    def _room_ok(self, room_id: str) -> bool:
        # Timeline events only arrive for joined rooms; a message may come before our own join was processed.
        return room_id not in self._leaving and (room_id in self.joined or room_id in self._joining
                                                 or room_allowed(room_id, self.allowed))

    def _is_old(self, room_id: str, ts: int) -> bool:
        return room_id not in self.known_rooms and ts < self.start_ms

    async def _on_message(self, evt: MessageEvent) -> None:
        room_id, sender = str(evt.room_id), str(evt.sender)
        if sender == self.mxid or self._is_old(room_id, evt.timestamp) or not self._room_ok(room_id):
            return
        content = evt.content
        known = isinstance(content, BaseMessageEventContentFuncs)  # else an unknown msgtype (a bare Obj)
        if (known and content.get_edit() is not None) or getattr(content, "msgtype", None) == MessageType.NOTICE:
            return  # edits are not new questions; notices come from other bots
        state = self._state(room_id, sender)  # taken before any await: answers keep the order of the questions
        async with state.lock:
            direct = await self._member_count(room_id) <= 2
            state.conv.chat_type = "direct" if direct else "group"
            thread_root = content.get_thread_parent() if known else None
            reply_to = content.get_reply_to() if known else None
            rel = content._relates_to if known else None
            if rel is not None and rel.is_falling_back:
                reply_to = None  # a thread's fallback reply, not a real one
            msgtype = getattr(content, "msgtype", None) if known else None
            if msgtype not in TEXT_TYPES or not isinstance(getattr(content, "body", None), str):
                if direct:
                    await self._send(room_id, text_content(texts.NON_TEXT, in_reply_to=str(evt.event_id),
                                                           thread_root=thread_root, mention=sender,
                                                           msgtype=ANSWER_MSGTYPE))
                return
            body: str = content.body
            handled = await self.curation.handle(
                room_id=room_id, sender=sender, body=body, direct=direct,
                replied_turn=self.answers.get(str(reply_to)) if reply_to is not None else None)
            if handled is not None:
                await self._send(room_id, text_content(handled, in_reply_to=str(evt.event_id), thread_root=thread_root,
                                                       mention=sender, msgtype=ANSWER_MSGTYPE))
                return
            if not direct:
                addressed = (
                    mentions_user(content, self.mxid, self.display_name)
                    or (reply_to is not None and await self._sent_by_bot(room_id, str(reply_to)))
                    or (bool(state.conv.pending_choices) and looks_like_pick(body, len(state.conv.pending_choices)))
                )
                if not addressed:
                    return
            question = strip_mention(body, self.mxid, self.display_name)
            await self._answer(state, room_id, str(evt.event_id), sender, question, thread_root, direct)

    async def _answer(self, state: _ConvState, room_id: str, event_id: str, sender: str, question: str,
                      thread_root: str | None, direct: bool) -> None:
        conv = state.conv
        offer = state.offer_turn_id if conv.pending_choices else None
        async with self._typing(room_id):
            final: Reply | None = None
            async for event in self.answerer.stream(question, conv):
                if isinstance(event, Reply):
                    final = event  # Drafts (unverified LLM text) are not shown: Matrix gets the verified answer
        if final is None:  # the core always ends with a Reply; be safe anyway
            return
        if final.reason == Reason.NONE_OF_THESE and offer is not None:
            self.answerer.feedback(offer, "none")
        state.offer_turn_id = final.turn_id if final.route is Route.CLARIFY else None
        content = reply_content(final, in_reply_to=event_id, thread_root=thread_root, mention=sender,
                                msgtype=ANSWER_MSGTYPE)
        answer_id = await self._send(room_id, content)
        if answer_id is not None:
            self.answers[answer_id] = final.turn_id
            if direct and offers_notify(final):  # "reply 通知我" (bot/matrix/curation.py), to this hint or the answer
                hint_id = await self._send(room_id, text_content(texts.MATRIX_NOTIFY_HINT, in_reply_to=answer_id))
                if hint_id is not None:
                    self.answers[hint_id] = final.turn_id

    # ------------------------------------------------------------------ reactions
    async def _on_reaction(self, evt: ReactionEvent) -> None:
        room_id, sender = str(evt.room_id), str(evt.sender)
        if sender == self.mxid or self._is_old(room_id, evt.timestamp):
            return
        rel = evt.content.relates_to
        kind = reaction_kind(rel.key)
        answer_id = str(rel.event_id) if rel.event_id else None
        turn_id = self.answers.get(answer_id) if answer_id else None
        if kind is None or turn_id is None:
            return
        if self._redacted.pop(str(evt.event_id), None):
            return  # already removed: its redaction was handled first (an encrypted reaction is decrypted later)
        self._reactions[str(evt.event_id)] = (answer_id, sender, kind)
        present = self._thumbs.get((answer_id, sender)) or []
        if kind in present:
            return  # the same thumb twice (another device): already counted
        self._thumbs[(answer_id, sender)] = [*present, kind]
        self.answerer.feedback(turn_id, kind)
        log.debug("Matrix: feedback %s on turn %s", kind, turn_id)

    async def _on_redaction(self, evt: RedactionEvent) -> None:
        """A removed 👍/👎: the person's remaining thumbs reaction on that answer counts, else 'withdrawn'."""
        if self._is_old(str(evt.room_id), evt.timestamp):
            return
        if not evt.redacts:
            return
        found = self._reactions.pop(str(evt.redacts), None)
        if found is None:
            # Maybe a reaction not handled yet: an encrypted one is still being decrypted when the (plaintext)
            # redaction that removes it arrives in the same sync. Remember it, so that reaction is not counted.
            self._redacted[str(evt.redacts)] = True
            return
        answer_id, sender, kind = found
        present = [k for k in (self._thumbs.get((answer_id, sender)) or []) if k != kind]
        self._thumbs[(answer_id, sender)] = present
        turn_id = self.answers.get(answer_id)
        if turn_id is None:
            return
        now = present[-1] if present else "withdrawn"
        self.answerer.feedback(turn_id, now)
        log.debug("Matrix: feedback %s withdrawn on turn %s (now %s)", kind, turn_id, now)

    # ------------------------------------------------------------------ encrypted events
    async def _on_encrypted(self, evt: EncryptedEvent) -> None:
        """Decrypt and hand the event to the same handlers as a plaintext one; ask the person to send again when
        it cannot be decrypted (and request its keys)."""
        room_id, sender = str(evt.room_id), str(evt.sender)
        if sender == self.mxid or self._is_old(room_id, evt.timestamp) or not self._room_ok(room_id):
            return
        try:
            decrypted = await self.e2ee.decrypt(evt)
        except DecryptionError as exc:
            await self._undecryptable(evt, exc)
            return
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # malformed content: cannot be read either
            await self._undecryptable(evt, exc)
            return
        # The decrypted event runs through the normal handlers (as tasks the shutdown waits for).
        self.client.dispatch_event(decrypted, evt.source)

    async def _undecryptable(self, evt: EncryptedEvent, exc: Exception) -> None:
        room_id, sender = str(evt.room_id), str(evt.sender)
        session_id = str(getattr(evt.content, "session_id", ""))
        log.warning("Matrix: could not decrypt a message in %s: %s", await self._room_label(room_id),
                    type(exc).__name__)
        # Ask the sender's device for the keys; the answer (if any) lands in the store for later messages.
        if isinstance(exc, SessionNotFound):
            await self.e2ee.request_keys(evt, wait=0)
        direct = await self._member_count(room_id) <= 2
        key = (room_id, sender, session_id)
        if not direct and key in self._asked_resend:
            return  # in a group: once per key session (the message may not even have been for the bot)
        self._asked_resend[key] = True
        # Any thread it was in is inside the encrypted content: the request goes to the main timeline.
        await self._send(room_id, text_content(texts.MATRIX_UNDECRYPTABLE, in_reply_to=str(evt.event_id),
                                               mention=sender, msgtype=ANSWER_MSGTYPE))

    # ------------------------------------------------------------------ sending
    def _typing(self, room_id: str):
        return _Typing(self.client, room_id)

    async def _send(self, room_id: str, content: dict[str, Any]) -> str | None:
        """Send a message; retries rate limits and unreachable-server errors with the same transaction id (so a
        retry never duplicates). Returns the event id, or None when it could not be sent."""
        txn_id = self.client.api.get_txn_id()
        delay = 1.0
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                return str(await self.client.send_message_event(room_id, EventType.ROOM_MESSAGE, content,
                                                                txn_id=txn_id))
            except (MLimitExceeded, MatrixConnectionError) as exc:
                if attempt == SEND_ATTEMPTS:
                    log.error("Matrix: giving up sending to %s: %s", await self._room_label(room_id), exc)
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 8.0)
            except MatrixRequestError as exc:
                log.error("Matrix: could not send to %s: %s", await self._room_label(room_id), exc)
                return None
            except CryptoError as exc:
                log.error("Matrix: could not encrypt for %s: %s", await self._room_label(room_id), exc)
                return None
        return None


def _invite_is_direct(stripped: list[dict[str, Any]], mxid: str) -> bool:
    """A direct chat, by the inviter's ``is_direct`` flag on the bot's invite (what Element sets), or a room of at
    most the inviter and the bot."""
    me = next((e for e in stripped if e.get("type") == "m.room.member" and e.get("state_key") == mxid), {})
    if (me.get("content") or {}).get("is_direct"):
        return True
    joined = [e for e in stripped if e.get("type") == "m.room.member"
              and (e.get("content") or {}).get("membership") == "join"]
    return 0 < len(joined) <= 1


class _Typing:
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

    async def __aenter__(self) -> _Typing:
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


async def run_matrix(services: Services, settings: Settings, stop: asyncio.Event) -> None:
    """Run the Matrix transport until ``stop`` is set; then stop syncing, finish the answers in flight and return.
    The caller owns ``services`` (and drains the log afterwards)."""
    bot = MatrixBot(services, settings)
    await bot.run(stop)
