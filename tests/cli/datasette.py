"""`faqbot logs serve` as the tests drive it: a real subprocess on a free loopback port, its Datasette child, and
HTTP requests to it with the standard library.

``Datasette(db, folder, *args, env=..., password=...)`` starts it and waits until the port answers; ``.info`` is
the JSON start-up line (url, queries, password_required, server_pid), the rest of its stdout is read in a thread
(so a full pipe can never block the server) and kept with its stderr for ``output()``. ``stop()`` sends SIGTERM to `faqbot logs serve` and fails when
its Datasette child outlives it. The shared servers of tests/cli/conftest.py are built on it.

``Client(source)`` is a cookie-keeping client whose connections come from the loopback address ``source``: the
login throttle counts per client address, so a test that counts failed logins uses an address of its own.
``login(s, password, client)`` is the browser's login (the form with Datasette's CSRF token).
"""

from __future__ import annotations

import base64
import functools
import http.client
import http.cookiejar
import json
import re
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from bot.cli.arguments import REVIEW_USER
from tests.support.cli import child_env, faqbot_cmd
from tests.support.ports import free_port, wait_for_port

PASSWORD = "correct-horse-battery-staple"  # ASCII: datasette-auth-passwords decodes HTTP Basic as ASCII
USER = REVIEW_USER  # the review site's user
# The bot's secrets in the environment of the shared open site's `faqbot logs serve`, which must not pass them on
# to Datasette (tests/cli/test_serve_guard.py reads the child's environment).
SECRETS = {
    "FAQBOT_SECRET": "pseudonym-key-must-not-leak",
    "OPENAI_API_KEY": "sk-must-not-leak-0123456789",
    "TELEGRAM_BOT_TOKEN": "123456:must-not-leak-token",
    "MATRIX_PASSWORD": "matrix-must-not-leak",
}


def basic(user: str, password: str) -> dict[str, str]:
    """The HTTP Basic header of a script (curl -u)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class _FromAddress(urllib.request.HTTPHandler):
    """HTTP connections from a given local address (any of 127.0.0.0/8 reaches a server on 127.0.0.1)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def http_open(self, req):
        return self.do_open(functools.partial(http.client.HTTPConnection, source_address=(self.source, 0)), req)


class Client:
    """A browser-like client: a cookie jar and connections from ``source``."""

    def __init__(self, source: str = "127.0.0.1") -> None:
        self.source = source
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _FromAddress(source))

    def has_cookie(self, name: str) -> bool:
        return any(c.name == name for c in self.jar)


def csrf_token(page: bytes) -> str:
    """The CSRF token of a Datasette form page."""
    return re.search(rb'name="csrftoken" value="([^"]+)"', page).group(1).decode()


class Datasette:
    def __init__(
        self,
        db: Path,
        folder: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ):
        self.db = db
        self.port = free_port()
        full = child_env()
        full.update(env or {})
        if password is not None:
            full["FAQBOT_REVIEW_PASSWORD"] = password
        self.log = folder / f"serve-{self.port}.log"
        with open(self.log, "w") as stderr:
            self.proc = subprocess.Popen(
                [*faqbot_cmd(), "logs", "serve", "--db", str(db), "--port", str(self.port), "--json", *args],
                cwd=folder,
                env=full,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self.info: dict[str, Any] = json.loads(self.proc.stdout.readline() or "{}")
        self._output: list[str] = []  # the rest of stdout, kept for ``output()``
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        self.server_pid: int | None = self.info.get("server_pid")
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for_port(self.proc, self.port, self.log, timeout)

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self._output.append(line)

    def output(self) -> str:
        """What `faqbot logs serve` and its Datasette child printed so far: stdout after the start-up line, then
        stderr."""
        return "".join(self._output) + self.log.read_text(errors="replace")

    def request(
        self,
        path: str,
        *,
        headers: dict | None = None,
        data: bytes | None = None,
        client: Client | None = None,
    ) -> tuple[int, Any, bytes]:
        """(status, headers, body) of a GET, or of a POST when ``data`` is given; from ``client`` (cookies, source
        address) when given, else a fresh client from 127.0.0.1."""
        req = urllib.request.Request(self.base + path, headers=headers or {}, data=data)
        try:
            with (client.opener if client else urllib.request.build_opener()).open(req, timeout=15) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def get(self, path: str, headers: dict | None = None, client: Client | None = None) -> tuple[int, bytes]:
        status, _, body = self.request(path, headers=headers, client=client)
        return status, body

    def post(
        self, path: str, fields: dict[str, str], headers: dict | None = None, client: Client | None = None
    ) -> tuple[int, bytes]:
        status, _, body = self.request(
            path, headers=headers, client=client, data=urllib.parse.urlencode(fields).encode()
        )
        return status, body

    def rows(self, path: str, **kw: Any) -> list[dict]:
        sep = "&" if "?" in path else "?"
        status, body = self.get(path + sep + "_shape=array", **kw)
        assert status == 200, (status, body[:500])
        return json.loads(body)

    def stop(self) -> None:
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:  # a test killed it already
            children = []
        if self.server_pid and all(p.pid != self.server_pid for p in children) and psutil.pid_exists(self.server_pid):
            children.append(psutil.Process(self.server_pid))
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to `faqbot logs serve`: it must stop Datasette too
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        gone, alive = psutil.wait_procs(children, timeout=10)
        for p in alive:
            p.kill()
        assert not alive, "the Datasette child outlived `faqbot logs serve`"
        self._drainer.join(timeout=10)  # both processes are gone: the pipe is at its end


def login(s: Datasette, password: str, client: Client, user: str = USER) -> tuple[int, Any, bytes]:
    """The login form as a browser fills it in (with the CSRF token of the form page): (status, headers, body) of
    the POST. A success answers 302 with the signed ``ds_actor`` cookie, which urllib follows (200) and ``client``
    keeps; a failure answers 200 with the form and a message."""
    status, _, page = s.request("/-/login", client=client)
    assert status == 200, status
    form = {"username": user, "password": password, "csrftoken": csrf_token(page)}
    return s.request("/-/login", data=urllib.parse.urlencode(form).encode(), client=client)
