"""Matrix login: an access token from the settings, or a password login done once whose token is kept in
``matrix-session.json`` next to the conversation database (mode 0600) and reused on the next start.

The session file also keeps the device id (a new login asks for the same device, so its encryption keys stay
valid) and, once encryption set up cross-signing, the account's recovery key (``bot.matrix.e2ee``). With an access
token from the settings the token itself is not written there."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mautrix.api import Method
from mautrix.api import Path as Path_
from mautrix.errors import MatrixInvalidToken, MatrixRequestError

if TYPE_CHECKING:
    from mautrix.client import Client

    from bot.app.settings import Settings

log = logging.getLogger("faqbot.matrix")

DEVICE_NAME = "faqbot"


class MatrixConfigError(ValueError):
    """The Matrix settings cannot work (missing credentials, user id mismatch)."""


@dataclass
class StoredSession:
    homeserver: str
    user_id: str
    device_id: str
    access_token: str  # "" when the token comes from MATRIX_ACCESS_TOKEN
    recovery_key: str = ""


def session_path(settings: Settings) -> Path:
    return Path(settings.db).parent / "matrix-session.json"


def load_session(path: Path) -> StoredSession | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StoredSession(
            str(data["homeserver"]),
            str(data["user_id"]),
            str(data.get("device_id") or ""),
            str(data.get("access_token") or ""),
            str(data.get("recovery_key") or ""),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable Matrix session file %s (%s)", path, type(exc).__name__)
        return None


def save_session(path: Path, session: StoredSession) -> None:
    """Write atomically, readable by the owner only (the file holds an access token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(session), f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


async def authenticate(client: Client, settings: Settings, *, new_device: bool = False) -> StoredSession:
    """Give ``client`` a working access token, user id and device id (checked with ``/whoami``); return what the
    session file now holds.

    MATRIX_ACCESS_TOKEN wins (MATRIX_USER_ID is then optional: the token names its user); else the stored session
    is reused while its token works; else MATRIX_PASSWORD logs in (as the stored device, unless ``new_device``) and
    the new token is stored. Raises MatrixConfigError when neither is configured or the ids do not match, and
    mautrix errors for a rejected token or password.
    """
    wanted_user = settings.matrix_user_id or None
    homeserver = str(settings.matrix_homeserver or "").rstrip("/")
    path = session_path(settings)
    stored = load_session(path)

    if settings.has_matrix_token:
        client.api.token = settings.matrix_access_token.get_secret_value()
        await _whoami(client, wanted_user)
        same_account = stored is not None and (stored.homeserver, stored.user_id) == (homeserver, client.mxid)
        # The recovery key belongs to the account, not the device: it is kept for a new token of the same user.
        session = StoredSession(
            homeserver, str(client.mxid), str(client.device_id or ""), "", stored.recovery_key if same_account else ""
        )
        if session != stored:
            save_session(path, session)
        return session

    if not settings.has_matrix_password:
        raise MatrixConfigError("Matrix needs MATRIX_ACCESS_TOKEN, or MATRIX_USER_ID with MATRIX_PASSWORD")
    if not wanted_user:
        raise MatrixConfigError("MATRIX_PASSWORD login needs MATRIX_USER_ID")

    mine = stored if stored is not None and stored.homeserver == homeserver and stored.user_id == wanted_user else None
    if mine is not None and mine.access_token and not new_device:
        client.api.token = mine.access_token
        try:
            await _whoami(client, wanted_user)
            log.info("Matrix: reusing the stored session of %s (device %s)", client.mxid, client.device_id)
            return mine
        except MatrixInvalidToken:
            log.warning("Matrix: the stored access token was rejected; logging in again")
            client.api.token = ""

    client.mxid = wanted_user
    client.device_id = None  # mautrix logs in as the client's current device unless told another one
    resp = await client.login(
        identifier=wanted_user,
        password=settings.matrix_password.get_secret_value(),
        device_name=DEVICE_NAME,
        device_id=mine.device_id if mine is not None and mine.device_id and not new_device else None,
    )
    session = StoredSession(
        homeserver,
        str(resp.user_id),
        str(resp.device_id),
        resp.access_token,
        mine.recovery_key if mine is not None else "",
    )
    save_session(path, session)
    log.info("Matrix: logged in as %s (device %s); session stored in %s", resp.user_id, resp.device_id, path)
    return session


async def delete_device(client: Client, settings: Settings, device_id: str) -> bool:
    """Delete one of the account's other devices (after its keys were lost), authenticating with the password
    (user-interactive auth, m.login.password). False when the homeserver refused."""
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": str(client.mxid)},
        "password": settings.matrix_password.get_secret_value(),
    }
    path = Path_.v3.devices[device_id]
    try:
        await client.api.request(Method.DELETE, path, {"auth": auth}, sensitive=True)
        return True
    except MatrixRequestError as exc:
        try:  # the first answer of user-interactive auth: 401 with the session to continue
            session = json.loads(getattr(exc, "text", "") or "{}").get("session")
        except ValueError:
            session = None
        if exc.http_status != 401 or not session:
            log.warning("Matrix: could not delete the old device %s: %s", device_id, exc)
            return False
    try:
        await client.api.request(Method.DELETE, path, {"auth": {**auth, "session": session}}, sensitive=True)
        return True
    except MatrixRequestError as exc:
        log.warning("Matrix: could not delete the old device %s: %s", device_id, exc)
        return False


def remember_recovery_key(settings: Settings, session: StoredSession, key: str) -> StoredSession:
    """Keep the account's cross-signing recovery key in the session file (mode 0600)."""
    updated = replace(session, recovery_key=key)
    save_session(session_path(settings), updated)
    return updated


async def _whoami(client: Client, wanted_user: str | None) -> None:
    who = await client.whoami()
    if wanted_user and who.user_id != wanted_user:
        raise MatrixConfigError(f"the Matrix access token belongs to {who.user_id}, not MATRIX_USER_ID={wanted_user}")
    client.mxid = who.user_id
    client.device_id = who.device_id or client.device_id
