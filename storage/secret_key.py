"""The pseudonymization key file: created once with mode 0600, refused when it is not safely ours.

The key itself is only bytes to `bot.answering.privacy.pseudonymize`; where it lives and how it is created safely is
storage's job (`storage.safety` checks the file).
"""

from __future__ import annotations

import logging
import os
import secrets as _secrets
from pathlib import Path

from storage.safety import ensure_private_folder, read_private_file

log = logging.getLogger(__name__)


def load_or_create_secret(configured: str | None, path: Path) -> bytes:
    """The pseudonymization secret.

    A configured (non-blank) value wins, used as UTF-8. Otherwise the content of `path` if it exists and is not
    empty. Otherwise 32 random bytes, hex-encoded (64 characters), are written to `path` with mode 0600 (the parent
    directory is created with mode 0700 if missing) and returned. Creation is race-safe: if two processes start at
    once, both end up with the same file content.
    """
    if configured is not None and configured.strip():
        return configured.strip().encode("utf-8")
    path = Path(path)
    existing = _read_secret(path)
    if existing:
        return existing

    ensure_private_folder(path.parent, "pseudonymization key")
    value = _secrets.token_hex(32).encode("ascii")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(value + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # in case a umask or ACL interfered
        try:
            os.link(tmp, path)  # atomic, fails if another process created the file first
        except FileExistsError:
            winner = _read_secret(path)
            if winner:
                return winner
            os.replace(tmp, path)  # an empty leftover file: replace it
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    log.info("created a new pseudonymization secret in %s", path)
    return value


def _read_secret(path: Path) -> bytes | None:
    # storage.safety refuses a key that is a symbolic link, a FIFO, another user's or writable by others.
    data = read_private_file(path, "pseudonymization key")
    return (data or b"").strip() or None
