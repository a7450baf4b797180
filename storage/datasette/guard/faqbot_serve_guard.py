"""Datasette plugin loaded by `faqbot logs serve` (``--plugins-dir``): guards for the review site.

* Host header: on a loopback address without login, only requests for 127.0.0.1 / localhost / [::1] (with the
  served port) are answered. A page on another site that rebinds its own name to 127.0.0.1 (DNS rebinding) sends
  its own name as Host and gets 421, so it cannot read the log through the curator's browser.
* Login throttle: after ``max_failures`` failed logins (the /-/login form, or HTTP Basic credentials that were
  refused) from one client address within ``window_seconds``, that address gets 429 on login attempts until the
  window has passed; ``max_failures_total`` does the same for all addresses together (many addresses, one target).
* SQL memory: every connection gets SQLite limits -- the longest string or blob a query may build
  (SQLITE_LIMIT_LENGTH) and the longest SQL text -- and the process a hard heap limit, so an arbitrary query in the
  SQL box cannot exhaust the server's memory; Datasette's own ``sql_time_limit_ms`` bounds the time.

Configuration comes from the metadata ``plugins.faqbot_serve_guard`` block written by `faqbot logs serve`.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque

from datasette import hookimpl

NAME = "faqbot_serve_guard"


def _config(datasette) -> dict:
    return datasette.plugin_config(NAME) or {}


@hookimpl
def prepare_connection(conn, database, datasette):
    cfg = _config(datasette)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, int(cfg.get("max_value_bytes", 10_000_000)))
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, int(cfg.get("max_sql_bytes", 100_000)))
    heap = int(cfg.get("heap_limit_bytes", 0))
    if heap:
        conn.execute(f"PRAGMA hard_heap_limit = {heap}")


class _Failures:
    """Failed login times per client address (and overall) within a sliding window."""

    def __init__(self, per_client: int, total: int, window: float) -> None:
        self.per_client, self.total, self.window = per_client, total, window
        self.by_client: dict[str, deque[float]] = {}
        self.all: deque[float] = deque()

    def _trim(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - self.window:
            q.popleft()

    def blocked(self, client: str) -> float:
        """Seconds until ``client`` may try again (0 = now)."""
        now = time.monotonic()
        self._trim(self.all, now)
        q = self.by_client.get(client)
        if q is not None:
            self._trim(q, now)
            if not q:
                del self.by_client[client]
        waits = []
        if q is not None and len(q) >= self.per_client:
            waits.append(q[0] + self.window - now)
        if len(self.all) >= self.total:
            waits.append(self.all[0] + self.window - now)
        return max(waits, default=0.0)

    def add(self, client: str) -> None:
        now = time.monotonic()
        self.by_client.setdefault(client, deque()).append(now)
        self.all.append(now)
        if len(self.by_client) > 10_000:  # bounded memory under a spray of addresses
            self.by_client.pop(next(iter(self.by_client)))

    def reset(self, client: str) -> None:
        self.by_client.pop(client, None)


async def _plain(send, status: int, text: str, headers: list | None = None) -> None:
    body = text.encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


def _host_allowed(host: str, allowed: set[str]) -> bool:
    host = host.strip().lower()
    return host in allowed


@hookimpl
def asgi_wrapper(datasette):
    cfg = _config(datasette)
    allowed_hosts = {h.lower() for h in cfg.get("allowed_hosts") or []}
    failures = _Failures(
        int(cfg.get("max_failures", 5)), int(cfg.get("max_failures_total", 50)), float(cfg.get("window_seconds", 900))
    )

    def wrap(app):
        async def guard(scope, receive, send):
            if scope.get("type") != "http":
                return await app(scope, receive, send)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
            if allowed_hosts and not _host_allowed(headers.get("host", ""), allowed_hosts):
                return await _plain(
                    send,
                    421,
                    "421 Misdirected Request: this review site answers only to 127.0.0.1, localhost or [::1]\n",
                )
            is_form_login = scope.get("path") == "/-/login" and scope.get("method") == "POST"
            has_basic = headers.get("authorization", "").lower().startswith("basic ")
            if not (is_form_login or has_basic):
                return await app(scope, receive, send)
            client = (scope.get("client") or ("?", 0))[0]
            wait = failures.blocked(client)
            if wait > 0:
                return await _plain(
                    send,
                    429,
                    "429 Too Many Requests: too many failed logins; try again later\n",
                    [(b"retry-after", str(int(wait) + 1).encode())],
                )
            status: dict[str, int] = {}

            async def watch(message):
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            await app(scope, receive, watch)
            code = status.get("code", 0)
            # The login form answers 302 (a redirect with the signed cookie) on success and 200 (the form with
            # "Invalid username or password") on failure; refused Basic credentials end as 401/403.
            failed = (code != 302) if is_form_login else code in (401, 403)
            if failed:
                failures.add(client)
            else:
                failures.reset(client)

        return guard

    return wrap
