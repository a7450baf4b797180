"""`faqbot logs serve`: a real Datasette subprocess on 127.0.0.1, queried over HTTP.

Covers the canned queries, the live (not immutable) read-only view while the bot keeps writing, the password
login (anonymous refused, HTTP Basic and the login form accepted) and the refusal to start without a password.
The canned queries and the login are checked on the shared servers of tests/cli/conftest.py; the live view writes
to the log it serves, so it has a server of its own.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from pathlib import Path

import psutil
import pytest

from bot.answering.types import Conversation, Reply, Route
from bot.cli.main import main
from bot.cli.serve import datasette_metadata, is_loopback
from storage.writer import TurnLog
from tests.cli.datasette import PASSWORD, USER, Datasette, basic
from tests.support.cli import faqbot
from tests.support.logs import SECRET, copy_log

pytest.importorskip("datasette")
pytest.importorskip("datasette_auth_passwords")


def q(text: str) -> str:
    return urllib.parse.quote(text)


def test_canned_queries_over_http(served_log, open_site):
    fx, s = served_log, open_site
    info = s.info
    assert info["url"] == f"http://127.0.0.1:{s.port}/faqbot" and info["password_required"] is False
    assert info["read_only"] is True and "gap_inbox" in info["queries"]
    by_id = {v: k for k, v in fx.ids.items()}

    gaps = s.rows("/faqbot/gap_inbox.json")
    by_q = {r["normalized_question"]: r for r in gaps}
    assert by_q["社保卡能坐公交吗"]["turns"] == 2 and by_q["社保卡能坐公交吗"]["thumbs_down"] == 1
    assert by_q["社保卡密码锁了"]["turns"] == 2 and by_q["社保卡密码锁了"]["none_of_these"] == 1
    assert by_q["养老金怎么算"]["guard_failures"] == 1 and by_q["养老金怎么算"]["routes"] == "llm"
    assert "" not in by_q  # greetings and errors have no normalized question
    assert sum(r["turns"] for r in gaps) == 13  # every gap turn (5 bus + 3 pw + 2 balance + pension + weather + lost)
    since = s.rows("/faqbot/gap_inbox.json?since=" + q(fx_recent_iso()))
    assert "今天天气怎么样" not in {r["normalized_question"] for r in since}

    assert {by_id[r["id"]] for r in s.rows("/faqbot/thumbs_down.json")} == {"lost_pii", "bus2", "llm_fail"}
    assert {by_id[r["id"]] for r in s.rows("/faqbot/none_of_these.json")} == {"bus4", "pw1"}
    guard = s.rows("/faqbot/guard_failures.json")
    assert [by_id[r["id"]] for r in guard] == ["llm_fail"] and "3000" in guard[0]["llm_raw"]
    recent = s.rows("/faqbot/recent_turns.json")
    assert len(recent) == 20 and recent[-1]["id"] == fx.id("reissue")

    detail = s.rows("/faqbot/turn_detail.json?id=" + fx.id("llm_fail")[:6])
    assert [r["id"] for r in detail] == [fx.id("llm_fail")]
    assert detail[0]["model"] == "gpt-4o-mini" and detail[0]["feedback_events"].startswith("down ")
    assert s.rows("/faqbot/turn_detail.json?id=abc") == []  # prefixes need 4+ characters
    assert len(s.rows("/faqbot/turn_detail.json?id=abcd")) == 2

    # Full-text search on the turns table uses the trigram index: a Chinese substring matches.
    found = s.rows("/faqbot/turns.json?_search=" + q("社保卡能坐") + "&_col=id")
    assert {by_id[r["id"]] for r in found} == {"bus1", "bus2"}


def fx_recent_iso() -> str:
    import datetime as dt

    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).strftime("%Y-%m-%d")


def test_live_view_sees_new_rows_and_opens_the_file_read_only(served_log, tmp_path):
    db = copy_log(served_log, tmp_path)
    s = Datasette(db, tmp_path)
    try:
        assert len(s.rows("/faqbot/recent_turns.json")) == 20

        async def write_one():
            log = TurnLog(db, secret=SECRET, flush_interval=0.001)
            async with log:
                log.record_turn(
                    Conversation("telegram", "42", "private", "42"),
                    Reply(
                        route=Route.NONE,
                        text="…",
                        question="社保卡能在高铁上用吗",
                        normalized="社保卡能在高铁上用吗",
                        turn_id="feedfeedfeed0001",
                    ),
                )
                await log.flush(timeout=10)

        asyncio.run(write_one())  # the bot keeps writing while the log is served (not --immutable)
        recent = s.rows("/faqbot/recent_turns.json")
        assert len(recent) == 21 and recent[0]["id"] == "feedfeedfeed0001"
        status, body = s.get("/faqbot.json?_shape=array&sql=" + q("select count(*) as n from turns"))
        assert status == 200 and json.loads(body)[0]["n"] == 21
        assert s.get("/faqbot.json?sql=" + q("delete from turns"))[0] == 400  # only SELECT
        # Datasette holds the log file open read-only (mode=ro), never for writing.
        (child,) = psutil.Process(s.proc.pid).children(recursive=True)
        modes = {f.mode for f in child.open_files() if Path(f.path) == db.resolve()}
        assert modes == {"r"}
    finally:
        s.stop()


def test_password_required_refuses_anonymous_and_accepts_login(locked_site, curator):
    s = locked_site
    assert s.info["password_required"] is True
    assert s.get("/faqbot/recent_turns.json")[0] == 403
    assert s.get("/faqbot/gap_inbox.json")[0] == 403
    assert s.get("/")[0] == 403

    assert s.get("/faqbot/recent_turns.json", headers=basic(USER, "wrong"))[0] == 403
    assert len(s.rows("/faqbot/recent_turns.json", headers=basic(USER, PASSWORD))) == 20

    # The browser way: the login form (with Datasette's CSRF token), then the signed actor cookie (``curator``
    # logged in through the form, tests/cli/conftest.py).
    assert curator.has_cookie("ds_actor")
    assert len(s.rows("/faqbot/thumbs_down.json", client=curator)) == 3


def test_refuses_to_start_without_password(served_log, capsys):
    fx = served_log
    code = main(["logs", "serve", "--db", str(fx.path), "--host", "0.0.0.0", "--port", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err and "FAQBOT_REVIEW_PASSWORD" in err
    code = main(["logs", "serve", "--db", str(fx.path), "--require-password", "--port", "1"])
    assert code == 2 and "--require-password" in capsys.readouterr().err
    # In a real process too (no server is started: the port stays free).
    p = faqbot("logs", "serve", "--db", fx.path, "--host", "10.1.2.3", timeout=30)
    assert p.returncode == 2 and "not a loopback address" in p.stderr


def test_loopback_and_metadata():
    assert is_loopback("127.0.0.1") and is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    assert not is_loopback("::") and not is_loopback("")
    open_meta = datasette_metadata("mylog", password=False)
    assert "allow" not in open_meta and "plugins" not in open_meta
    assert set(open_meta["databases"]["mylog"]["queries"]) >= {
        "gap_inbox",
        "thumbs_down",
        "guard_failures",
        "recent_turns",
        "turn_detail",
    }
    locked = datasette_metadata("faqbot", password=True, user="reviewer")
    assert locked["allow"] == {"id": "reviewer"}
    # Only a reference to an environment variable: no password or hash is written to the metadata file.
    assert locked["plugins"]["datasette-auth-passwords"] == {
        "reviewer_password_hash": {"$env": "FAQBOT_REVIEW_PASSWORD_HASH"}
    }
