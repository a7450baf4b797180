"""Matrix adapter helpers that need no homeserver: HTML, reply content, mentions, reactions, allow-list, session file."""

from __future__ import annotations

import json
import stat

import pytest

pytest.importorskip("mautrix")

from bot.answering.types import Conversation, Route  # noqa: E402
from bot.matrix.format import (  # noqa: E402
    looks_like_pick,
    mentions_user,
    reaction_kind,
    reply_content,
    room_allowed,
    strip_mention,
    text_content,
    to_html,
)
from bot.matrix.session import StoredSession, load_session, save_session  # noqa: E402

BOT = "@faqbot:example.org"


def test_faq_answer_html_bolds_the_question_and_escapes(answerer):
    reply = answerer.match("社保卡丢了怎么办", Conversation("matrix", "!r:x"))
    assert reply.route is Route.FAQ
    c = reply_content(reply, in_reply_to="$q")
    assert c["body"] == reply.text
    title = reply.text.split("\n", 1)[0]
    assert c["formatted_body"].startswith(f"<p><strong>{title}</strong></p>")
    assert c["format"] == "org.matrix.custom.html"
    assert c["msgtype"] == "m.notice"
    assert c["m.relates_to"] == {"m.in_reply_to": {"event_id": "$q"}}
    assert c["m.mentions"] == {}


def test_user_derived_text_is_escaped():
    html = to_html('<script>alert("x")</script> & <b>', bold_first_line=True)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp;" in html
    assert html.startswith("<p><strong>")


def test_numbered_lines_become_an_ordered_list(answerer):
    reply = answerer.match("社保卡", Conversation("matrix", "!r:x"))
    assert reply.route is Route.CLARIFY
    html = reply_content(reply)["formatted_body"]
    assert "<ol>" in html and html.count("<li>") == len(reply.choices)
    assert f"<li>{reply.choices[0].question}</li>" in html
    assert "<strong>" not in html  # only curated answers get a bold first line


def test_thread_and_mention():
    c = text_content("答", in_reply_to="$q", thread_root="$root", mention="@alice:x")
    assert c["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": "$q"},
    }
    assert c["m.mentions"] == {"user_ids": ["@alice:x"]}


@pytest.mark.parametrize(
    "content,expected",
    [
        ({"body": "社保卡丢了怎么办"}, False),
        ({"body": "@faqbot:example.org 社保卡丢了怎么办"}, True),
        ({"body": "问答助手：社保卡丢了怎么办"}, True),
        ({"body": "问答助手：社保卡丢了怎么办", "m.mentions": {}}, True),
        ({"body": "x", "m.mentions": {"user_ids": [BOT]}}, True),
        ({"body": "x", "m.mentions": {"user_ids": ["@other:example.org"]}}, False),
        (
            {"body": "bot: x", "formatted_body": '<a href="https://matrix.to/#/%40faqbot%3Aexample.org">bot</a>: x'},
            True,
        ),
    ],
)
def test_mentions(content, expected):
    assert mentions_user(content, BOT, "问答助手") is expected


def test_strip_mention():
    assert strip_mention("@faqbot:example.org: 社保卡丢了怎么办", BOT, "问答助手") == "社保卡丢了怎么办"
    assert strip_mention("问答助手，社保卡丢了怎么办", BOT, "问答助手") == "社保卡丢了怎么办"
    assert strip_mention("问答助手 2", BOT, "问答助手") == "2"


def test_picks():
    assert looks_like_pick("2", 3) and looks_like_pick("０", 3) and looks_like_pick("3。", 3)
    assert not looks_like_pick("4", 3) and not looks_like_pick("社保卡", 3) and not looks_like_pick("", 3)


@pytest.mark.parametrize(
    "key,kind",
    [
        ("👍", "up"),
        ("👍️", "up"),
        ("👍🏽", "up"),
        ("👎", "down"),
        ("👎🏻", "down"),
        ("❤️", None),
        ("", None),
        (None, None),
    ],
)
def test_reaction_kind(key, kind):
    assert reaction_kind(key) == kind


def test_allow_list():
    assert room_allowed("!a:example.org", [])
    assert room_allowed("!a:example.org", ["example.org"])
    assert room_allowed("!a:example.org", ["!a:example.org"])
    assert not room_allowed("!a:example.org", ["other.org", "!b:example.org"])
    # Room version 12 ids carry no server name: the creator's server decides.
    assert room_allowed("!abcdef", ["example.org"], creator="@u:example.org")
    assert not room_allowed("!abcdef", ["example.org"], creator="@u:evil.org")
    assert not room_allowed("!abcdef", ["example.org"])


def test_session_file_is_private_and_round_trips(tmp_path):
    path = tmp_path / "data" / "matrix-session.json"
    s = StoredSession("https://hs", "@b:hs", "DEV", "tok")
    save_session(path, s)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_session(path) == s
    path.chmod(0o644)
    save_session(path, s)  # rewriting tightens an existing file too
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("{not json")
    assert load_session(path) is None
    path.write_text(json.dumps({"homeserver": "x"}))
    assert load_session(path) is None
