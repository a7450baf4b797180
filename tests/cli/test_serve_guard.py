"""`faqbot logs serve` against an attacker (issue 12, item 13), over HTTP against the real Datasette child:
DNS rebinding (Host header), short passwords, password guessing, the child's environment, a SIGKILLed parent and
SQL that would exhaust memory."""

from __future__ import annotations

import json
import signal
import socket
import urllib.parse

import psutil
import pytest

from tests.cli.datasette import PASSWORD, SECRETS, USER, Client, Datasette, basic, login
from tests.support.cli import faqbot_main

pytest.importorskip("datasette")
pytest.importorskip("datasette_auth_passwords")


def raw_get(port: int, host_header: str, path: str = "/faqbot.json") -> int:
    """A GET with exactly this Host header (what a DNS-rebinding page's requests carry)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_the_no_login_site_answers_only_to_loopback_names(open_site):
    s = open_site
    assert s.info["password_required"] is False
    for good in (f"127.0.0.1:{s.port}", f"localhost:{s.port}", f"LOCALHOST:{s.port}", f"[::1]:{s.port}"):
        assert raw_get(s.port, good) == 200, good
    for evil in (f"evil.example:{s.port}", "evil.example", f"127.0.0.1.nip.io:{s.port}", f"10.0.0.1:{s.port}", ""):
        assert raw_get(s.port, evil) == 421, evil


def test_a_short_review_password_is_refused(served_log, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAQBOT_REVIEW_PASSWORD", "elevenchars")  # 11 characters
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    # In-process, on a port this test holds: a server that started anyway could not bind it and would stop at once
    # (a wrong exit code) instead of running for ever.
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        for extra in (["--require-password"], ["--host", "0.0.0.0"]):
            code, out, err = faqbot_main(capsys, "logs", "serve", "--db", served_log.path, "--port", port, *extra)
            assert code == 2, err
            assert "refusing to start" in err and "at least 12" in err and "elevenchars" not in out + err


def test_failed_logins_are_throttled(locked_site):
    s = locked_site
    guesser = Client("127.0.0.2")  # the throttle counts per client address: this test's own
    for i in range(5):
        status, _, body = login(s, f"guess-number-{i}", guesser)
        assert status == 200 and b"Invalid username or password" in body
        assert not guesser.has_cookie("ds_actor")
    # The sixth attempt is not even checked -- also with the right password, also over HTTP Basic.
    status, headers, body = login(s, PASSWORD, guesser)
    assert status == 429 and int(headers["Retry-After"]) > 0
    assert not guesser.has_cookie("ds_actor")
    assert s.request("/faqbot/recent_turns.json", headers=basic(USER, PASSWORD), client=guesser)[0] == 429


def test_a_successful_login_resets_the_count(locked_site):
    s = locked_site
    typist = Client("127.0.0.3")  # the throttle counts per client address: this test's own
    # Typos in the user name: failed logins like any other for the throttle, without a password check each.
    typos = ["curatr", "Curator", "cuartor", "curator.", "c urator"]
    for name in typos[:4]:
        status, _, body = login(s, PASSWORD, typist, user=name)
        assert status == 200 and b"Invalid username or password" in body
    assert not typist.has_cookie("ds_actor")
    login(s, PASSWORD, typist)
    assert typist.has_cookie("ds_actor")
    for name in typos:  # after a success the whole allowance is back: five more mistakes...
        status, _, body = login(s, PASSWORD, typist, user=name)
        assert status == 200 and b"Invalid username or password" in body
    assert login(s, PASSWORD, typist)[0] == 429  # ...and then the throttle again


def test_datasette_gets_no_secrets_in_its_environment(open_site):
    s = open_site
    with open(f"/proc/{s.proc.pid}/environ", "rb") as fh:  # `faqbot logs serve` was given the secrets...
        parent = fh.read().decode("utf-8", "replace")
    assert all(f"{name}={value}" in parent for name, value in SECRETS.items())
    with open(f"/proc/{s.server_pid}/environ", "rb") as fh:  # ...and kept them from Datasette
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
def test_sigkill_of_logs_serve_stops_datasette(served_log, tmp_path):
    s = Datasette(served_log.path, tmp_path)  # its own: this test kills it
    try:
        server = psutil.Process(s.server_pid)
        assert server.is_running()
        s.proc.send_signal(signal.SIGKILL)  # no handler runs in the parent
        s.proc.wait(timeout=10)
        gone, alive = psutil.wait_procs([server], timeout=30)
        assert not alive, "Datasette kept serving after `faqbot logs serve` was killed"
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
    finally:
        s.stop()


def test_sql_cannot_build_huge_values(open_site):
    s = open_site
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


def test_refused_and_missing_pages_print_no_traceback(served_log, tmp_path):
    """Datasette's default error page printed every error -- a 403 or 404 too -- as a rich traceback with the local
    variables of each frame (rich is installed: the CLI renders with it): ~22 KB of request internals on the
    operator's terminal and 0.15-0.4 s of CPU for each refused request, which anyone can send. The pages stay."""
    s = Datasette(served_log.path, tmp_path, "--require-password", password=PASSWORD)
    try:
        for path in ("/faqbot", "/faqbot/turns.json", "/-/metadata.json"):
            assert s.get(path)[0] == 403  # anonymous
        status, page = s.get("/faqbot/no_such_table", headers=basic(USER, PASSWORD))
        assert status == 404 and b"not found" in page.lower()
        status, body = s.get("/faqbot/no_such_table.json", headers=basic(USER, PASSWORD))
        assert status == 404 and json.loads(body)["ok"] is False
    finally:
        s.stop()
    out = s.output()
    assert "Traceback" not in out and "locals" not in out, out[:3000]
