"""End-to-end encryption for the Matrix transport, with mautrix's crypto (``mautrix.crypto.OlmMachine``).

Set up the way maubot and the mautrix bridges do it, through the library's public API:

* one SQLite file, ``matrix-crypto.db`` next to the conversation database (created mode 0600; SQLite gives its
  ``-wal``/``-shm`` files the same mode), holds the Olm account, the Olm and Megolm sessions and the device lists
  (``PgCryptoStore``) and the room state encryption needs -- members, encryption settings (``PgCryptoStateStore``,
  sharing the store's connection through ``Database.override_pool``). Keys survive restarts;
* the store records the device it belongs to. A store of another device (a new access token) is wiped and started
  again; a file SQLite cannot read is moved aside (``.unreadable``) and a new store started; an empty store for a
  device that already has keys on the server means the store was lost: the caller
  (``bot.matrix.app``) then gets a new device when it can log in with a password (``StoreLost``), else the new keys
  are uploaded for the same device after the stale one-time keys are claimed away;
* after the device keys are on the server the bot cross-signs its own device: the first start creates the
  account's cross-signing keys (allowed without interactive auth when the account has none) and a recovery key,
  kept in the session file; later devices are signed with that recovery key.

Decryption is not left to mautrix's ``DecryptionDispatcher`` (it drops what it cannot decrypt): the transport
decrypts itself (``decrypt``), waits briefly for late keys, asks the sender's device for them (``request_keys``)
and tells the person when it still cannot read a message.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from mautrix.client import Client, DecryptionDispatcher
from mautrix.crypto import OlmMachine, PgCryptoStateStore, PgCryptoStore
from mautrix.errors import MatrixError, SessionNotFound
from mautrix.types import EncryptedEvent, EncryptionKeyAlgorithm, Event, TrustState
from mautrix.util.async_db import Database

if TYPE_CHECKING:
    from bot.app.settings import Settings

log = logging.getLogger("faqbot.matrix")

STORE_NAME = "matrix-crypto.db"
# Olm pickles are encrypted with this key; the file's protection is its 0600 mode (the key has to live next to it).
PICKLE_KEY = "faqbot.matrix.e2ee"
KEY_WAIT_S = 3.0  # a message's keys often arrive in the same or the next sync: wait this long before asking
# mautrix's crypto logs routine things at warning level with user and device ids in the text ("Device @alice:… isn't
# cross-signed" for every person without cross-signing). User ids stay out of the process log: only its errors pass.
CRYPTO_LOG = logging.getLogger("faqbot.matrix.crypto")
CRYPTO_LOG.setLevel(logging.ERROR)


class StoreLost(Exception):
    """The crypto store is empty but this device already published keys: its private keys are gone."""


def crypto_store_path(settings: Settings) -> Path:
    return Path(settings.db).parent / STORE_NAME


def _create_private(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also tightens a file that already existed
    finally:
        os.close(fd)


def _unreadable(path: Path) -> str | None:
    """Why ``path`` is not a usable SQLite database (checked with the standard library before the store's own
    connection opens it), or None."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None


class E2EE:
    """The crypto state of one bot device: store, OlmMachine, and the client's automatic encryption of sends."""

    def __init__(self, client: Client, path: Path):
        self.client = client
        self.path = path
        # One file, one connection: the crypto store's tables and the state store's share the pool (as maubot does).
        self.db, self.state_db, self.store, self.state_store = self._stores()
        self.machine: OlmMachine | None = None
        self.replaced_keys = False  # new keys were published for a device whose store was lost
        self._open = False

    async def open(self) -> None:
        """Open (creating, mode 0600) the store. A file that is not a usable SQLite database is moved aside to
        ``matrix-crypto.db.unreadable`` and a new store started: for the homeserver that is a lost store."""
        _create_private(self.path)
        problem = _unreadable(self.path)
        if problem:
            aside = self.path.with_name(self.path.name + ".unreadable")
            log.error(
                "Matrix: the crypto store %s is unreadable (%s); moved to %s, starting a new one",
                self.path,
                problem,
                aside.name,
            )
            os.replace(self.path, aside)
            _create_private(self.path)
        await self.db.start()
        await self.state_db.start()
        await self.store.open()
        self._open = True

    def _stores(self) -> tuple[Database, Database, PgCryptoStore, PgCryptoStateStore]:
        db = Database.create(
            f"sqlite:{self.path}", upgrade_table=PgCryptoStore.upgrade_table, log=CRYPTO_LOG.getChild("db")
        )
        state_db = Database.create(
            f"sqlite:{self.path}", upgrade_table=PgCryptoStateStore.upgrade_table, log=CRYPTO_LOG.getChild("db")
        )
        state_db.override_pool(db)
        return db, state_db, PgCryptoStore(account_id="", pickle_key=PICKLE_KEY, db=db), PgCryptoStateStore(state_db)

    async def start(self, *, allow_lost: bool) -> None:
        """Load (or create) the device's Olm account, publish its keys, and attach crypto to the client.

        Raises StoreLost when the store is empty but the device already has keys on the server and ``allow_lost``
        is False (the caller can log in as a new device instead)."""
        device_id = str(self.client.device_id)
        stored = await self.store.get_device_id()
        if stored and stored != device_id:
            log.warning("Matrix: the crypto store belongs to device %s, not %s; starting a new one", stored, device_id)
            await self.store.delete()
            stored = None
        # Checked before an OlmMachine exists: a machine registers sync handlers on the client that would publish
        # its (new) account's keys, and the caller may still move to another device.
        if not stored and await self._keys_on_server():
            if not allow_lost:
                raise StoreLost(device_id)
            log.warning(
                "Matrix: the crypto store of device %s was lost; publishing new keys for the same device. "
                "Clients that knew its old keys will refuse them: set MATRIX_PASSWORD or use a new "
                "access token (a new device)",
                device_id,
            )
            await self._claim_stale_one_time_keys()
            self.replaced_keys = True
        self.client.state_store = self.state_store
        if self.machine is None:  # one per client: a retried start (homeserver unreachable) reuses it
            self.machine = OlmMachine(self.client, self.store, self.state_store, log=CRYPTO_LOG)
            # Keys go to every device of the room's members, verified or not (what Element does by default).
            self.machine.share_keys_min_trust = TrustState.UNVERIFIED
            self.machine.send_keys_min_trust = TrustState.UNVERIFIED
        machine = self.machine
        await machine.load()
        if not stored:
            await self.store.put_device_id(device_id)
        elif machine.account.shared and not await self._keys_on_server():
            log.warning("Matrix: the homeserver has no keys for device %s; uploading them again", device_id)
            machine.account.shared = False
        if not machine.account.shared:
            await machine.share_keys()
        self.client.crypto = machine
        # Public: what a person compares when verifying the bot's device by hand (README, "Encrypted rooms").
        log.info("Matrix: encryption on; device %s, ed25519 fingerprint %s", device_id, machine.account.fingerprint)
        # This module decrypts (and reports what it cannot): mautrix's dispatcher would drop those silently.
        self.client.remove_dispatcher(DecryptionDispatcher)

    async def _keys_on_server(self) -> bool:
        resp = await self.client.query_keys([self.client.mxid])
        device = resp.device_keys.get(self.client.mxid, {}).get(self.client.device_id)
        return device is not None and bool(device.keys)

    async def _claim_stale_one_time_keys(self) -> None:
        """Claim the old account's unused one-time keys from the server: the new account numbers its keys from the
        start again, and the homeserver refuses a key id it still holds with a different key."""
        for _ in range(200):  # the library keeps at most 50 published
            wanted = {self.client.mxid: {self.client.device_id: EncryptionKeyAlgorithm.SIGNED_CURVE25519}}
            resp = await self.client.claim_keys(wanted)
            keys = resp.one_time_keys.get(self.client.mxid, {}).get(self.client.device_id) or {}
            if not keys or any(getattr(v, "fallback", False) for v in keys.values()):
                return  # none left (a fallback key is handed out only when the one-time keys are gone)

    async def cross_sign(self, recovery_key: str | None) -> str | None:
        """Cross-sign this device (what other users' clients check before calling it verified by its owner).
        Returns a newly created recovery key, to be kept; else None."""
        machine = self.machine
        assert machine is not None
        mxid, device_id = self.client.mxid, self.client.device_id
        try:
            resp = await self.client.query_keys([mxid])
            master = resp.master_keys.get(mxid)
            ssk = resp.self_signing_keys.get(mxid)
            device = resp.device_keys.get(mxid, {}).get(device_id)
            if master is None:
                key = await machine.generate_recovery_key()
                log.info("Matrix: created the account's cross-signing keys and signed device %s", device_id)
                return key
            signers = set((device.signatures or {}).get(mxid, {})) if device is not None else set()
            # The server keeps a signature of the lost keys on a device whose keys were replaced: sign again.
            if (
                not self.replaced_keys
                and ssk is not None
                and any(str(k) in {str(s) for s in signers} for k in ssk.keys)
            ):
                return None  # already signed by the account's self-signing key
            if recovery_key:
                await machine.verify_with_recovery_key(recovery_key)
                log.info("Matrix: signed device %s with the stored recovery key", device_id)
            else:
                log.warning(
                    "Matrix: the account has cross-signing keys but no recovery key is stored; device %s "
                    "stays unverified (set MATRIX_RECOVERY_KEY, or verify it from another session)",
                    device_id,
                )
        except (MatrixError, ValueError, KeyError) as exc:
            log.warning("Matrix: could not cross-sign device %s: %s", device_id, exc)
        return None

    async def decrypt(self, evt: EncryptedEvent, wait: float = KEY_WAIT_S) -> Event:
        """Decrypt a room event, waiting up to ``wait`` seconds for keys still on their way.
        Raises mautrix's DecryptionError (SessionNotFound when the keys never came)."""
        machine = self.machine
        assert machine is not None
        try:
            return await machine.decrypt_megolm_event(evt)
        except SessionNotFound as exc:
            if wait > 0 and await machine.wait_for_session(evt.room_id, exc.session_id, timeout=wait):
                return await machine.decrypt_megolm_event(evt)
            raise

    async def request_keys(self, evt: EncryptedEvent, wait: float) -> bool:
        """Ask the sender's devices (and the bot's own other devices) for the message's keys; True when they came
        within ``wait`` seconds."""
        machine = self.machine
        assert machine is not None
        content = evt.content
        devices = {evt.sender: [content.device_id]} if getattr(content, "device_id", None) else {evt.sender: ["*"]}
        try:
            return await machine.request_room_key(
                evt.room_id, content.sender_key, content.session_id, from_devices=devices, timeout=wait
            )
        except (TimeoutError, MatrixError) as exc:
            log.debug("Matrix: key request failed: %s", exc)
            return False

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            await self.store.close()
        finally:
            await self.state_db.stop()
            await self.db.stop()
