"""The Matrix framework part of the bot: log in, start encryption, take the first sync, sync until stopped, run the
event handlers, shut down. The features (bot/matrix/app.py) only register handlers, in the spirit of maubot, where
the framework owns sync and membership and a plugin holds only feature logic.

* ``MatrixSync.run(stop, started=…)`` logs in (retrying an unreachable homeserver with backoff), skips everything
  that happened before it started, then syncs until ``stop`` is set; it then stops syncing, lets the handlers being
  run finish (bounded) and returns. Every handler runs as a task the shutdown waits for; one that fails is logged.
* Room membership (invites, the allow-list, encrypted rooms without encryption) is ``bot.matrix.rooms``; sending
  with retries ``bot.matrix.sending``.
* Encrypted rooms work like the others when end-to-end encryption is on (``MATRIX_E2EE``; default: on when the
  crypto dependency is installed; ``bot.matrix.e2ee``): events are decrypted and handed to the same handlers as
  plaintext ones. A message that cannot be decrypted gets a request to send it again (every one in a direct room,
  once per sender's key session in a group) and its keys are requested.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache
from mautrix.client import Client, InternalEventType, SyncStream
from mautrix.client.state_store import MemorySyncStore
from mautrix.errors import (
    DecryptionError,
    MatrixConnectionError,
    MatrixError,
    MatrixInvalidToken,
    MatrixRequestError,
    MLimitExceeded,
    SessionNotFound,
)
from mautrix.types import EncryptedEvent, EventType

from bot.answering import texts
from bot.matrix.format import text_content
from bot.matrix.rooms import RoomPolicy
from bot.matrix.sending import ANSWER_MSGTYPE, Sender
from bot.matrix.session import (
    MatrixConfigError,
    StoredSession,
    authenticate,
    delete_device,
    remember_recovery_key,
)

try:  # python-olm (the `matrix` extra); without it encrypted rooms get the notice-and-leave behaviour
    from bot.matrix.e2ee import E2EE, StoreLost, crypto_store_path
except ImportError as _no_crypto:  # pragma: no cover - the test environment installs the extra
    E2EE = None
    _CRYPTO_MISSING = str(_no_crypto)
else:
    _CRYPTO_MISSING = ""

if TYPE_CHECKING:
    from bot.app.services import Services
    from bot.app.settings import Settings

log = logging.getLogger("faqbot.matrix")

Handler = Callable[[Any], Awaitable[None]]

# Filters: the first sync only needs the room list, invites and each room's state (no history); the loop keeps up to
# 50 timeline events per room per sync. Presence and account data are not used.
_NO_EXTRAS = {"presence": {"types": []}, "account_data": {"types": []}}


def first_sync_filter() -> str:
    """A filter unique to this start. Synapse answers an identical /sync request from a response cache for
    ``sync_response_cache_duration`` (2 min by default): a bot restarted within that time would get the previous
    start's snapshot and token, and then replay everything since. A never-matching ``not_types`` entry with a nonce
    makes the request new."""
    nonce = f"org.faqbot.start.{secrets.token_hex(8)}"
    return json.dumps(
        {
            **_NO_EXTRAS,
            "room": {
                "timeline": {"limit": 1, "not_types": [nonce]},
                "state": {"lazy_load_members": True},
                "ephemeral": {"types": []},
                "account_data": {"types": []},
            },
        }
    )


LOOP_FILTER = json.dumps(
    {
        **_NO_EXTRAS,
        "room": {
            "timeline": {"limit": 50},
            "state": {"lazy_load_members": True},
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    }
)
# In rooms joined after the first sync, events older than the start are history, not questions. Start time is on the
# homeserver's clock when its Date header differs from this machine's by more than this.
CLOCK_SLACK_MS = 2_000
MAX_RESEND_ASKED = 10_000  # (room, sender, key session) asked to send again, remembered
# The sync fields that carry encryption keys and device changes (handled from the first sync too: keys sent
# while the bot was down arrive there).
_CRYPTO_SYNC_FIELDS = ("to_device", "device_lists", "device_one_time_keys_count", "device_unused_fallback_key_types")


def e2ee_wanted(settings: Settings) -> bool:
    """MATRIX_E2EE, defaulting to whether the crypto dependency is installed."""
    return E2EE is not None if settings.matrix_e2ee is None else bool(settings.matrix_e2ee)


class MatrixSync:
    """One bot account's connection: the client, its rooms (``rooms``), sending (``sender``) and the sync loop."""

    def __init__(self, services: Services, settings: Settings, *, client: Client | None = None):
        if not settings.matrix_homeserver:
            raise MatrixConfigError("MATRIX_HOMESERVER is not set")
        self.settings = settings
        self.client = client or Client(base_url=settings.matrix_homeserver, sync_store=MemorySyncStore())
        self.e2ee_on = e2ee_wanted(settings)
        if self.e2ee_on and E2EE is None:
            raise MatrixConfigError(
                f"MATRIX_E2EE=true needs the crypto dependency (pip install 'faqbot[matrix]'): {_CRYPTO_MISSING}"
            )
        self.e2ee: E2EE | None = None  # set once encryption is running
        self._crypto: E2EE | None = None  # the store, opened by the first start attempt
        self.session: StoredSession | None = None
        self.display_name: str | None = None
        self.sender = Sender(self.client, self._room_label)
        # Pseudonyms of direct rooms in the process log: the log's own key, else one for this process.
        self.rooms = RoomPolicy(
            self.client, list(settings.matrix_allowed), services.secret or secrets.token_bytes(32), self.sender
        )
        self._handlers: list[tuple[EventType, Handler]] = []
        self._asked_resend: LRUCache = LRUCache(MAX_RESEND_ASKED)
        self._tasks: set[asyncio.Task] = set()
        self._sync_error: BaseException | None = None
        self.ready = asyncio.Event()  # set once syncing runs (tests wait on it)

    @property
    def mxid(self) -> str:
        return self.client.mxid

    def on(self, event_type: EventType, handler: Handler) -> None:
        """Run ``handler`` for every event of ``event_type`` synced after the start (decrypted ones included)."""
        self._handlers.append((event_type, handler))

    async def _room_label(self, room_id: str) -> str:
        return await self.rooms.room_label(room_id)

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event, *, started: Callable[[], Awaitable[None]] | None = None) -> None:
        """Connect, sync until ``stop`` is set (``started`` runs once syncing runs), then shut down. A sync that
        stops by itself is raised as RuntimeError."""
        try:
            if not await self._until_stopped(self._connect, stop):
                return
            for event_type, handler in self._handlers:
                self.client.add_event_handler(event_type, self._tracked(handler))
            if self.e2ee is not None:
                self.client.add_event_handler(EventType.ROOM_ENCRYPTED, self._tracked(self._on_encrypted))
            self.client.add_event_handler(EventType.ROOM_MEMBER, self._tracked(self.rooms.on_member))
            self.client.add_event_handler(
                EventType.ROOM_ENCRYPTION, self._tracked(self.rooms.on_encryption), sync_stream=SyncStream.JOINED_ROOM
            )
            self.client.add_event_handler(InternalEventType.SYNC_STOPPED, self._on_sync_stopped)
            sync_task = self.client.start(LOOP_FILTER)
            self.ready.set()
            if started is not None:
                await started()
            log.info(
                "Matrix: %s is answering in %d room(s) (end-to-end encryption %s)",
                self.mxid,
                len(self.rooms.joined),
                "on" if self.e2ee is not None else "off",
            )
            stop_task = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({sync_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_task.cancel()
        finally:
            await self._shutdown()
        if self._sync_error is not None and not stop.is_set():
            raise RuntimeError(f"Matrix sync stopped: {self._sync_error!r}") from self._sync_error

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
            except (TimeoutError, MatrixConnectionError, OSError) as exc:
                log.warning("Matrix: homeserver unreachable (%s); retrying in %.0f s", type(exc).__name__, delay)
            except MatrixRequestError as exc:
                if exc.http_status < 500 and not isinstance(exc, MLimitExceeded):
                    raise
                log.warning("Matrix: homeserver error %s; retrying in %.0f s", exc.http_status, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
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
        await self.rooms.resolve_aliases()
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
        created = await e2ee.cross_sign(
            self.session.recovery_key or (configured.get_secret_value() if configured is not None else None)
        )
        if created:
            self.session = remember_recovery_key(self.settings, self.session, created)
        self.e2ee = e2ee
        self.rooms.encryption = True

    async def _first_sync(self) -> None:
        """Take the starting point: note joined rooms, settle pending invites and leave rooms that are not (or no
        longer) allowed or are encrypted. Nothing of this sync is answered: it is all from before the start."""
        self.rooms.start_ms = await self._start_time_ms()
        data = await self.client.sync(timeout=0, filter_id=first_sync_filter())
        await self.rooms.take_first_sync(data.get("rooms", {}))
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

    # ------------------------------------------------------------------ encrypted events
    async def _on_encrypted(self, evt: EncryptedEvent) -> None:
        """Decrypt and hand the event to the same handlers as a plaintext one; ask the person to send again when
        it cannot be decrypted (and request its keys)."""
        room_id, sender = str(evt.room_id), str(evt.sender)
        if sender == self.mxid or self.rooms.is_history(room_id, evt.timestamp) or not self.rooms.accepts(room_id):
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
        log.warning(
            "Matrix: could not decrypt a message in %s: %s", await self.rooms.room_label(room_id), type(exc).__name__
        )
        # Ask the sender's device for the keys; the answer (if any) lands in the store for later messages.
        if isinstance(exc, SessionNotFound):
            await self.e2ee.request_keys(evt, wait=0)
        direct = await self.rooms.member_count(room_id) <= 2
        key = (room_id, sender, session_id)
        if not direct and key in self._asked_resend:
            return  # in a group: once per key session (the message may not even have been for the bot)
        self._asked_resend[key] = True
        # Any thread it was in is inside the encrypted content: the request goes to the main timeline.
        await self.sender.send(
            room_id,
            text_content(
                texts.MATRIX_UNDECRYPTABLE, in_reply_to=str(evt.event_id), mention=sender, msgtype=ANSWER_MSGTYPE
            ),
        )
