"""The Datasette process behind `faqbot logs serve`: what it is started with, and how it dies with its parent.

* **Minimal environment.** The child gets only PATH, locale, TZ, TMPDIR and PYTHONPATH from the parent, plus the
  password hash when a login is required: no FAQBOT_SECRET (the pseudonymization key), no bot tokens or API keys. A
  query or a plugin that reads the environment finds nothing worth having.
* **Dies with its parent.** ``start`` gives the child the read end of a pipe whose write end only the parent holds.
  ``python -m bot.cli.datasette_process FD …`` (the child) watches it in a thread: when the parent exits in any way --
  including SIGKILL, where no handler runs -- the kernel closes the write end, the read returns EOF and the child
  stops Datasette (SIGTERM to itself: uvicorn shuts down cleanly; ``os._exit`` if that takes over 5 s).
* **Guards.** Datasette loads storage/datasette/guard/faqbot_serve_guard.py (Host-header check, login throttle,
  SQLite limits); ``guard_config`` is its configuration. The same folder holds faqbot_search.py, the turns table's
  search box (configured in storage/datasette/metadata.yml).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from storage import DATASETTE_DIR

GUARD_DIR = DATASETTE_DIR / "guard"
GUARD_PLUGIN = "faqbot_serve_guard"
MIN_PASSWORD_CHARS = 12
KEEP_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TMPDIR", "PYTHONPATH")
# Bounds for anything typed into the SQL box (Datasette's sql_time_limit_ms bounds the time).
SQL_TIME_LIMIT_MS = 5000
# A facet of the turns table reads its column's index: 0.1-0.2 s at a million turns, so Datasette's default limit
# (200 ms) left it out whenever the machine was busy; a facet of an unindexed column still stops here.
FACET_TIME_LIMIT_MS = 500
MAX_VALUE_BYTES = 10_000_000  # longest string or blob a query may build
HEAP_LIMIT_BYTES = 512 * 1024 * 1024  # SQLite's memory in the server process


def child_env(extra: dict[str, str] | None = None, parent: dict[str, str] | None = None) -> dict[str, str]:
    """The child's whole environment: KEEP_ENV from ``parent`` (default os.environ) plus ``extra``."""
    parent = os.environ if parent is None else parent
    env = {k: parent[k] for k in KEEP_ENV if k in parent}
    env.setdefault("PATH", os.defpath)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def loopback_hosts(port: int) -> list[str]:
    """Host header values a browser sends for this server on a loopback address."""
    names = ("127.0.0.1", "localhost", "[::1]")
    # Without a port too: Datasette's internal requests (datasette.client) say "localhost". A rebinding page
    # always sends its own name, so loopback names are safe either way.
    return [f"{n}:{port}" for n in names] + list(names)


def guard_config(*, port: int, check_host: bool, max_failures: int = 5, window_seconds: int = 900) -> dict:
    """The metadata ``plugins`` entry for the guard plugin."""
    return {
        "allowed_hosts": loopback_hosts(port) if check_host else [],
        "max_failures": max_failures,
        "max_failures_total": max_failures * 10,
        "window_seconds": window_seconds,
        "max_value_bytes": MAX_VALUE_BYTES,
        "max_sql_bytes": 100_000,
        "heap_limit_bytes": HEAP_LIMIT_BYTES,
    }


def datasette_args(db: Path, host: str, port: int, metadata: Path) -> list[str]:
    # Plain read-only mode (mode=ro), not --immutable: the bot keeps writing the log while it is served.
    return [
        "serve",
        str(db),
        "--host",
        host,
        "--port",
        str(port),
        "--metadata",
        str(metadata),
        "--plugins-dir",
        str(GUARD_DIR),
        "--setting",
        "sql_time_limit_ms",
        str(SQL_TIME_LIMIT_MS),
        "--setting",
        "facet_time_limit_ms",
        str(FACET_TIME_LIMIT_MS),
        "--setting",
        "default_page_size",
        "100",
        "--setting",
        "max_returned_rows",
        "1000",
        "--setting",
        "max_csv_mb",
        "50",
        # Facet suggestions run a query per column of every table page: seconds on a large log.
        "--setting",
        "suggest_facets",
        "off",
    ]


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """Start ``python -m bot.cli.datasette_process`` (Datasette with ``args``); return the process and the pipe's write
    end, which the caller keeps open while it runs (close it, or exit, and the child stops)."""
    read_end, write_end = os.pipe()  # both non-inheritable: only the child gets read_end (pass_fds)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli.datasette_process", str(read_end), *args], env=env, pass_fds=(read_end,)
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return proc, write_end


def _watch_parent(fd: int) -> None:
    try:
        while os.read(fd, 64):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    os._exit(1)


def _child_main(argv: list[str]) -> None:
    fd = int(argv[0])
    threading.Thread(target=_watch_parent, args=(fd,), name="parent-watch", daemon=True).start()
    # Datasette uses rich whenever it can import it (it is installed: the CLI renders with it): every error page it
    # answers -- a refused (403) or missing (404) one too -- is printed as a traceback with the local variables of
    # each frame, ~22 KB of request internals on the operator's terminal and ~0.24 s of CPU for each such request,
    # which anyone can send (4 ms without rich), and an uncaught error would print locals such as the plugins'
    # configuration. This process runs only Datasette: a None entry in sys.modules makes `import rich` raise
    # ImportError here, and Datasette falls back to its plain pages and Python's own tracebacks.
    sys.modules["rich"] = None
    from datasette.cli import cli

    cli.main(args=argv[1:], prog_name="datasette")


if __name__ == "__main__":
    _child_main(sys.argv[1:])
