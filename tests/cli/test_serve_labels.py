"""Labelling turns in the web view: the writable canned query `label_turn`, only behind the password.

The shared servers of tests/cli/conftest.py (real `faqbot logs serve`, Datasette subprocess) on 127.0.0.1, driven
over HTTP: the logged-in curator labels turns (HTTP Basic for scripts, the login form + CSRF token for browsers);
anonymous visitors and the loopback view without a password change nothing. Only this file writes to the locked
site's log, and only the reviews table.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from pathlib import Path

import psutil
import pytest

from tests.cli.datasette import PASSWORD, USER, basic, csrf_token

pytest.importorskip("datasette")
pytest.importorskip("datasette_auth_passwords")


def reviews(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT turn_id, label, faq_id, status, note, reviewer FROM reviews ORDER BY id").fetchall()


def test_the_curator_labels_behind_the_password_and_anonymous_posts_change_nothing(served_log, locked_site, curator):
    fx, s, db = served_log, locked_site, locked_site.db
    assert "label_turn" in s.info["queries"] and s.info["read_only"] is False
    weather = fx.id("weather")
    fields = {"turn_id": weather, "verdict": "out-of-scope", "entry": "", "note": "天气", "_json": "1"}

    # anonymous: no form, no write
    assert s.get("/faqbot/label_turn")[0] == 403
    assert s.post("/faqbot/label_turn", fields)[0] == 403
    assert s.post("/faqbot/label_turn?_json=1", fields, headers=basic(USER, "wrong"))[0] == 403
    assert s.post("/faqbot/label_turn", fields, headers=basic("someone", PASSWORD))[0] == 403
    assert reviews(db) == []

    # the curator, scripted (HTTP Basic, no cookies); what it changed is read back as the logged-in browser
    auth = basic(USER, PASSWORD)
    gaps = {r["normalized_question"] for r in s.rows("/faqbot/gap_inbox.json", client=curator)}
    assert "今天天气怎么样" in gaps
    status, body = s.post("/faqbot/label_turn", fields, headers=auth)
    assert status == 200 and json.loads(body)["ok"] is True, body
    assert reviews(db) == [(weather, "out-of-scope", None, "closed", "天气", "web:curator")]
    gaps = {r["normalized_question"] for r in s.rows("/faqbot/gap_inbox.json", client=curator)}
    assert "今天天气怎么样" not in gaps  # a settled verdict leaves the inbox
    queue = {r["id"] for r in s.rows("/faqbot/review_queue.json", client=curator)}
    assert weather not in queue and fx.id("bus1") in queue
    latest = s.rows("/faqbot/latest_reviews.json", client=curator)
    assert [(r["turn_id"], r["verdict"], r["reviewer"]) for r in latest] == [(weather, "out-of-scope", "web:curator")]

    # the browser (``curator``: logged in through the form): the form with its CSRF token; without the token the
    # POST is refused
    status, page = s.get("/faqbot/label_turn", client=curator)
    assert status == 200 and b'name="verdict"' in page
    token = csrf_token(page)
    pw1 = fx.id("pw1")
    form = {"turn_id": pw1, "verdict": "entry", "entry": "reset_password", "note": ""}
    assert s.post("/faqbot/label_turn", form, client=curator)[0] == 403  # no CSRF token
    assert len(reviews(db)) == 1

    # bad input: a clear message (here as JSON), nothing stored
    for bad, message in [
        ({"verdict": "great"}, "unknown verdict"),
        ({"verdict": "entry"}, "needs an entry id"),
        ({"turn_id": "ffffffffffffffff"}, "unknown turn"),
    ]:
        status, body = s.post("/faqbot/label_turn", {**fields, **bad, "csrftoken": token}, client=curator)
        result = json.loads(body)
        assert status == 200 and result["ok"] is False and message in result["message"], body
    assert len(reviews(db)) == 1

    status, page = s.post("/faqbot/label_turn", {**form, "csrftoken": token}, client=curator)
    assert status == 200 and "Verdict saved." in page.decode()
    assert reviews(db)[-1] == (pw1, "entry", "reset_password", "open", None, "web:curator")


def test_loopback_without_password_stays_read_only(served_log, open_site):
    fx, s, db = served_log, open_site, open_site.db
    info = s.info
    assert info["read_only"] is True and "label_turn" not in info["queries"]
    assert "review_queue" in info["queries"]
    fields = {"turn_id": fx.id("weather"), "verdict": "spam", "_json": "1"}
    assert s.get("/faqbot/label_turn")[0] == 404
    # Without the query, Datasette takes the path for a table and refuses the POST (its own assertion: a 500
    # "You may only POST to a canned query"); what matters is that nothing is written.
    assert s.post("/faqbot/label_turn", fields)[0] >= 400
    sql = "insert into reviews (turn_id, label, reviewer, ts) values ('{}', 'spam', 'x', 'now')".format(
        fx.id("weather")
    )
    assert s.get("/faqbot.json?sql=" + urllib.parse.quote(sql))[0] == 400
    assert reviews(db) == []
    assert len(s.rows("/faqbot/review_queue.json")) > 0  # reading works
    (child,) = psutil.Process(s.proc.pid).children(recursive=True)
    assert {f.mode for f in child.open_files() if Path(f.path) == db.resolve()} == {"r"}
