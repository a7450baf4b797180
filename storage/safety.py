"""Checks on the files faqbot keeps private: the conversation log (and its -wal/-shm/-journal) and the
pseudonymization key.

They often live in shared folders (a server's data directory, /tmp on a test box), where another user may have
placed a file first: a key they know (the pseudonyms become reversible for them), a log they can read, a
symbolic link to a file of theirs or a FIFO that blocks start-up. So, before faqbot writes such a file or reads
the key:

* it must be a regular file, not a symbolic link (checked with ``lstat``; the key is opened with ``O_NOFOLLOW``
  and checked on the open descriptor), not a FIFO, device or directory;
* it must be owned by the user running faqbot -- also when that user is root;
* it must not be writable by group or others;
* the folder faqbot writes it in must not be writable by others unless it has the sticky bit (like /tmp, where
  the ownership check above then does the work).

New files are created with mode 0600 in folders created with mode 0700. Read-only review (``faqbot logs list``
etc.) only requires a regular file that is not a symbolic link: a curator may review a log owned by the bot's
account.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = [
    "UnsafeFileError",
    "check_private_file",
    "check_readable_file",
    "check_folder",
    "ensure_private_folder",
    "prepare_private_db",
    "read_private_file",
    "COMPANION_SUFFIXES",
]

COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")


class UnsafeFileError(Exception):
    """A file faqbot refuses to use; the message says why and what to do, in one line."""


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_stat(st: os.stat_result, path: Path | str, what: str, *, owned: bool = True) -> None:
    """Raise UnsafeFileError unless ``st`` (from lstat or fstat) describes a safe private file."""
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(f"refusing to use {what} {path}: it is {_kind(st.st_mode)}, not a regular file")
    if not owned:
        return
    me = os.geteuid()
    if st.st_uid != me:
        raise UnsafeFileError(
            f"refusing to use {what} {path}: it belongs to user id {st.st_uid}, not to the user running faqbot "
            f"({me}); someone else may have put it there -- move it away or fix its owner"
        )
    if st.st_mode & 0o022:
        raise UnsafeFileError(
            f"refusing to use {what} {path}: it is writable by {'group and others' if st.st_mode & 0o002 else 'group'}"
            f" (mode {stat.S_IMODE(st.st_mode):o}); run chmod 600 on it"
        )


def check_private_file(path: str | Path, what: str) -> bool:
    """Check ``path`` (not following a symbolic link) before faqbot writes it; False if it does not exist."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    check_stat(st, path, what)
    return True


def check_readable_file(path: str | Path, what: str) -> bool:
    """The check for read-only use: a regular file, not a symbolic link, any owner; False if it does not exist."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    check_stat(st, path, what, owned=False)
    return True


def check_folder(folder: str | Path, what: str) -> None:
    """Refuse a folder anyone may write to, unless it has the sticky bit."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):  # not a safety matter: the path is just unusable (the writer retries)
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    if st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX:
        raise UnsafeFileError(
            f"refusing to use {what} in {folder}: anyone can write to that folder (mode "
            f"{stat.S_IMODE(st.st_mode):o}); use a private folder (chmod 700)"
        )


def ensure_private_folder(folder: str | Path, what: str) -> None:
    """Create ``folder`` (and missing parents) with mode 0700 if missing, then ``check_folder`` it."""
    folder = Path(folder)
    if not folder.exists():
        old = os.umask(0o077)  # mkdir(mode=) alone does not apply to the parents it creates
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        finally:
            os.umask(old)
    check_folder(folder, what)


def prepare_private_db(path: str | Path, what: str, *, create: bool = True) -> bool:
    """Before SQLite opens ``path`` for writing: the folder (created 0700), the file and its -wal/-shm/-journal
    checked; a missing file created empty with mode 0600 if ``create`` (SQLite gives -wal and -shm the same mode).
    Returns False when the file is missing and ``create`` is False."""
    path = Path(path)
    ensure_private_folder(path.parent, what)
    for suffix in COMPANION_SUFFIXES:
        check_private_file(f"{path}{suffix}", f"{what} companion file")
    if check_private_file(path, what):
        return True
    if not create:
        return False
    create_private_file(path)
    check_private_file(path, what)  # lost a race to another creator: check theirs
    return True


def create_private_file(path: str | Path) -> None:
    """Create an empty file with mode 0600 if none exists (never following a symbolic link)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def read_private_file(path: str | Path, what: str) -> bytes | None:
    """The content of a private file (the key), or None if it does not exist.

    Opened with O_NOFOLLOW and O_NONBLOCK (a symbolic link fails, a FIFO does not block) and checked with fstat on
    the open descriptor, so the file checked is the file read. A file readable by group or others is tightened
    to 0600 (it was only readable: nobody could have chosen its content); one writable by them is refused.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(f"refusing to use {what} {path}: it is a symbolic link, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        check_stat(st, path, what)
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
