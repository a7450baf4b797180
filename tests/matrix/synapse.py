"""A real Synapse homeserver on loopback for the Matrix tests.

``Synapse.start(workdir)`` writes a test ``homeserver.yaml`` (one plain-HTTP ``client`` listener on 127.0.0.1 at a
free port, SQLite, no federation key servers, no URL previews, presence off, ``bcrypt_rounds: 4``, every ``rc_*``
rate limit raised, open registration off, shared-secret registration on), writes the signing key once, starts
``python -m synapse.app.homeserver`` from the Synapse venv (``.venv-synapse``, made by ``scripts/synapse-venv.sh``)
and waits for ``/_matrix/client/versions``. ``register(name)`` creates a user through the shared-secret admin API
(HMAC-SHA1 over nonce, user, password, admin flag) and returns its id and access token. ``stop()`` terminates the
process (SIGTERM, then SIGKILL).

Only the standard library is used here, so the fixture works without an event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
SYNAPSE_VENV = Path(os.environ.get("FAQBOT_SYNAPSE_VENV", REPO / ".venv-synapse"))
SYNAPSE_PYTHON = SYNAPSE_VENV / "bin" / "python"
SERVER_NAME = "faqbot.test"

# Every rc_* limiter Synapse reads, raised so that test clients never wait (the defaults make a client sleep
# seconds per message after a short burst).
_FAST = {"per_second": 10000, "burst_count": 100000}
RATE_LIMITS = {
    "rc_message": _FAST,
    "rc_registration": _FAST,
    "rc_registration_token_validity": _FAST,
    "rc_login": {"address": _FAST, "account": _FAST, "failed_attempts": _FAST},
    "rc_admin_redaction": _FAST,
    "rc_joins": {"local": _FAST, "remote": _FAST},
    "rc_joins_per_room": _FAST,
    "rc_key_requests": _FAST,
    "rc_3pid_validation": _FAST,
    "rc_invites": {"per_room": _FAST, "per_user": _FAST, "per_issuer": _FAST},
    "rc_third_party_invite": _FAST,
    "rc_media_create": _FAST,
    "rc_presence": {"per_user": _FAST},
    "rc_delayed_event_mgmt": _FAST,
    "rc_room_creation": _FAST,
    "rc_reports": _FAST,
    "rc_user_directory": _FAST,
    "rc_profile": _FAST,
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 10000,
        "sleep_delay": 1,
        "reject_limit": 100000,
        "concurrent": 1000,
    },
}


def synapse_available() -> bool:
    return SYNAPSE_PYTHON.is_file() and os.access(SYNAPSE_PYTHON, os.X_OK)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the test process dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


@dataclass
class User:
    user_id: str
    access_token: str
    device_id: str
    password: str


class Synapse:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.shared_secret = secrets.token_hex(16)
        self.config_path = self.workdir / "homeserver.yaml"
        self.log_path = self.workdir / "synapse.out"
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    # ------------------------------------------------------------------ lifecycle
    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_config = self.workdir / "log.yaml"
        log_config.write_text(
            json.dumps(
                {
                    "version": 1,
                    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "filename": str(self.workdir / "homeserver.log"),
                            "formatter": "plain",
                        }
                    },
                    "root": {"level": "WARNING", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        config = {
            "server_name": SERVER_NAME,
            "public_baseurl": self.base_url + "/",
            "pid_file": str(self.workdir / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(self.workdir / "homeserver.db")}},
            "log_config": str(log_config),
            "media_store_path": str(self.workdir / "media"),
            "signing_key_path": str(self.workdir / "signing.key"),
            "registration_shared_secret": self.shared_secret,
            "enable_registration": False,
            "report_stats": False,
            "enable_metrics": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            "bcrypt_rounds": 4,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            **RATE_LIMITS,
        }
        # JSON is valid YAML.
        self.config_path.write_text(json.dumps(config, indent=1))

    def start(self, timeout: float = 60.0) -> None:
        self.write_config()
        key = self.workdir / "signing.key"
        if not key.exists():
            # What `homeserver --generate-keys` writes (signedjson format: algorithm, key version, unpadded base64
            # of the 32-byte ed25519 seed), without paying ~3 s for a second Synapse import.
            seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
            key.write_text(f"ed25519 a_{secrets.token_hex(2)} {seed}\n")
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.workdir,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Synapse exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.base_url + "/_matrix/client/versions", timeout=1) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Synapse did not answer within {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def output(self) -> str:
        parts = []
        for p in (self.log_path, self.workdir / "homeserver.log"):
            if p.exists():
                parts.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    # ------------------------------------------------------------------ HTTP helpers (blocking, stdlib only)
    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path} -> {e.code}: {e.read().decode(errors='replace')}") from None

    def register(
        self, localpart: str, password: str | None = None, *, admin: bool = False, displayname: str | None = None
    ) -> User:
        """Create a user through the shared-secret admin API (``/_synapse/admin/v1/register``)."""
        password = password or secrets.token_hex(8)
        nonce = self.request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            nonce.encode()
            + b"\x00"
            + localpart.encode()
            + b"\x00"
            + password.encode()
            + b"\x00"
            + (b"admin" if admin else b"notadmin")
        )
        body = {"nonce": nonce, "username": localpart, "password": password, "admin": admin, "mac": mac.hexdigest()}
        if displayname:
            body["displayname"] = displayname
        r = self.request("POST", "/_synapse/admin/v1/register", body)
        return User(r["user_id"], r["access_token"], r.get("device_id", ""), password)
