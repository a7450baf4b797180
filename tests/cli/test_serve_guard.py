"""`faqbot logs serve` against an attacker (issue 12, item 13), over HTTP against the real Datasette child:
DNS rebinding (Host header), short passwords, password guessing, the child's environment, a SIGKILLed parent and
SQL that would exhaust memory."""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.cli.datasette import PASSWORD, Datasette
from tests.support.cli import faqbot
from tests.support.env import clean_environ
from tests.support.logs import build_log
from tests.support.ports import free_port

pytest.importorskip("datasette")
pytest.importorskip("datasette_auth_passwords")

REPO = Path(__file__).resolve().parents[2]
SECRETS = {
    "FAQBOT_SECRET": "pseudonym-key-must-not-leak",
    "OPENAI_API_KEY": "sk-must-not-leak-0123456789",
    "TELEGRAM_BOT_TOKEN": "123456:must-not-leak-token",
    "MATRIX_PASSWORD": "matrix-must-not-leak",
}


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build_log(tmp_path_factory.mktemp("guard") / "faqbot.db")


@pytest.fixture(scope="module")
def site(fx, tmp_path_factory):
    """One `faqbot logs serve` without a login on ``fx``, shared by the tests that only read from it (starting a
    server is most of such a test's time); the tests that log in, kill it or look at its environment start their own."""
    s = Datasette(fx.path, tmp_path_factory.mktemp("site"))
    yield s
    s.stop()


def raw_get(port: int, host_header: str, path: str = "/faqbot.json") -> int:
    """A GET with exactly this Host header (what a DNS-rebinding page's requests carry)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_the_no_login_site_answers_only_to_loopback_names(site):
    s = site
    assert s.info["password_required"] is False
    for good in (f"127.0.0.1:{s.port}", f"localhost:{s.port}", f"LOCALHOST:{s.port}", f"[::1]:{s.port}"):
        assert raw_get(s.port, good) == 200, good
    for evil in (f"evil.example:{s.port}", "evil.example", f"127.0.0.1.nip.io:{s.port}", f"10.0.0.1:{s.port}", ""):
        assert raw_get(s.port, evil) == 421, evil


def test_a_short_review_password_is_refused(fx, tmp_path):
    env = {**clean_environ(), "FAQBOT_REVIEW_PASSWORD": "elevenchars"}  # 11 characters
    port = free_port()
    for extra in (["--require-password"], ["--host", "0.0.0.0"]):
        # A subprocess with a timeout: a server that starts anyway would otherwise run for ever.
        p = faqbot("logs", "serve", "--db", fx.path, "--port", port, *extra, env=env, cwd=tmp_path)
        assert p.returncode == 2, p.stderr
        assert "refusing to start" in p.stderr and "at least 12" in p.stderr and "elevenchars" not in p.stderr


def _login(s: Datasette, password: str):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, _, page = s.request("/-/login", opener=opener)
    assert status == 200, status
    token = re.search(rb'name="csrftoken" value="([^"]+)"', page).group(1).decode()
    form = urllib.parse.urlencode({"username": "curator", "password": password, "csrftoken": token}).encode()
    status, headers, body = s.request("/-/login", data=form, opener=opener)
    return status, headers, body, jar


def test_failed_logins_are_throttled(fx, serve):
    s = serve(fx.path, "--require-password", env={"FAQBOT_REVIEW_PASSWORD": PASSWORD})
    for i in range(5):
        status, _, body, jar = _login(s, f"guess-number-{i}")
        assert status == 200 and b"Invalid username or password" in body
        assert not any(c.name == "ds_actor" for c in jar)
    # The sixth attempt is not even checked -- also with the right password, also over HTTP Basic.
    status, headers, body, jar = _login(s, PASSWORD)
    assert status == 429 and int(headers["Retry-After"]) > 0
    assert not any(c.name == "ds_actor" for c in jar)
    import base64

    basic = {"Authorization": "Basic " + base64.b64encode(f"curator:{PASSWORD}".encode()).decode()}
    assert s.request("/faqbot/recent_turns.json", headers=basic)[0] == 429


def test_a_successful_login_resets_the_count(fx, serve):
    s = serve(fx.path, "--require-password", env={"FAQBOT_REVIEW_PASSWORD": PASSWORD})
    for i in range(4):
        assert _login(s, f"typo-{i}")[0] == 200
    status, _, _, jar = _login(s, PASSWORD)
    assert any(c.name == "ds_actor" for c in jar)
    for i in range(4):  # four more mistakes after a success are still allowed
        assert _login(s, f"typo-again-{i}")[0] == 200


def test_datasette_gets_no_secrets_in_its_environment(fx, serve):
    s = serve(fx.path, env=SECRETS)
    with open(f"/proc/{s.server_pid}/environ", "rb") as fh:
        environ = fh.read().decode("utf-8", "replace")
    names = {kv.split("=", 1)[0] for kv in environ.split("\0") if kv}
    for name, value in SECRETS.items():
        assert name not in names and value not in environ
    assert names <= {
        "PATH",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "LC_CTYPE",
        "LC_MESSAGES",
        "TZ",
        "TMPDIR",
        "PYTHONPATH",
        "PYTHONUNBUFFERED",
    }, names
    assert raw_get(s.port, f"127.0.0.1:{s.port}") == 200  # and it works with that


@pytest.mark.load  # a whole-process fault test: waits for the orphaned child to notice and exit
def test_sigkill_of_logs_serve_stops_datasette(fx, serve):
    s = serve(fx.path)
    server = psutil.Process(s.server_pid)
    assert server.is_running()
    s.proc.send_signal(signal.SIGKILL)  # no handler runs in the parent
    s.proc.wait(timeout=10)
    gone, alive = psutil.wait_procs([server], timeout=30)
    assert not alive, "Datasette kept serving after `faqbot logs serve` was killed"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()


def test_sql_cannot_build_huge_values(site):
    s = site
    sql = urllib.parse.quote("select length(randomblob(50000000)) as n")
    status, _, body = s.request(f"/faqbot.json?sql={sql}&_shape=objects")
    data = json.loads(body)
    assert data.get("ok") is False and "too big" in data.get("error", ""), data
    sql = urllib.parse.quote(
        "select length(group_concat(q)) as n from (with recursive c(i, q) as "
        "(select 1, hex(randomblob(1000)) union all select i + 1, hex(randomblob(1000)) from c "
        "where i < 20000) select q from c)"
    )
    data = json.loads(s.request(f"/faqbot.json?sql={sql}&_shape=objects")[2])
    assert data.get("ok") is False and "too big" in data.get("error", ""), data
    sql = urllib.parse.quote("select count(*) as n from turns")
    data = json.loads(s.request(f"/faqbot.json?sql={sql}&_shape=objects")[2])
    assert data["rows"][0]["n"] == 20  # ordinary queries still work
