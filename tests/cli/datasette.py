"""`faqbot logs serve` as the tests drive it: a real subprocess on a free loopback port, its Datasette child, and
HTTP requests to it with the standard library.

``Datasette(db, folder, *args, env=..., password=...)`` starts it and waits until the port answers; ``.info`` is
the JSON start-up line (url, queries, password_required, server_pid), the rest of its stdout is drained in a
thread so a full pipe can never block the server. ``stop()`` sends SIGTERM to `faqbot logs serve` and fails when
its Datasette child outlives it. The ``serve`` fixture (tests/cli/conftest.py) stops every server it started.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from tests.support.cli import child_env, faqbot_cmd
from tests.support.ports import free_port

PASSWORD = "correct-horse-battery-staple"  # ASCII: datasette-auth-passwords decodes HTTP Basic as ASCII


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
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.server_pid: int | None = self.info.get("server_pid")
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {self.proc.returncode}\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("datasette did not start in time")

    def request(
        self,
        path: str,
        *,
        headers: dict | None = None,
        data: bytes | None = None,
        opener: urllib.request.OpenerDirector | None = None,
    ) -> tuple[int, Any, bytes]:
        """(status, headers, body) of a GET, or of a POST when ``data`` is given."""
        req = urllib.request.Request(self.base + path, headers=headers or {}, data=data)
        try:
            with (opener or urllib.request.build_opener()).open(req, timeout=15) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def get(self, path: str, headers: dict | None = None, opener=None) -> tuple[int, bytes]:
        status, _, body = self.request(path, headers=headers, opener=opener)
        return status, body

    def post(self, path: str, fields: dict[str, str], headers: dict | None = None, opener=None) -> tuple[int, bytes]:
        status, _, body = self.request(
            path, headers=headers, opener=opener, data=urllib.parse.urlencode(fields).encode()
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
