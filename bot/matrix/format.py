"""Pure helpers of the Matrix adapter: message content, HTML, mentions, reactions, the room allow-list.

Nothing here talks to a homeserver, so all of it is testable without one.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from bot.answering.types import FeedbackKind, Reply, Route

HTML_FORMAT = "org.matrix.custom.html"
_LIST_ITEM_RE = re.compile(r"^(\d{1,3})[.、]\s*(.+)$")
_PARAGRAPH_SPLIT_RE = re.compile(r"\n\s*\n")
# Left over around a removed mention: "@bot: 问题", "问答助手，问题", "问题 @bot".
_MENTION_PUNCT = " \t\r\n:：,，;；、"
_THUMBS_UP = "👍"
_THUMBS_DOWN = "👎"
# Variation selectors and Fitzpatrick skin-tone modifiers that clients may append to an emoji key.
_EMOJI_DECORATION_RE = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")


# ---------------------------------------------------------------------------------------------- HTML
def to_html(text: str, *, bold_first_line: bool = False) -> str:
    """Plain answer text -> Matrix HTML: paragraphs at blank lines, ``<br/>`` at line breaks, runs of
    "1. ..." lines as an ordered list; every piece of text HTML-escaped."""
    blocks: list[str] = []
    first = True

    def flush_text(run: list[str]) -> None:
        if run:
            blocks.append("<p>" + "<br/>".join(run) + "</p>")
            run.clear()

    def flush_list(items: list[str], start: int) -> None:
        if items:
            attr = "" if start == 1 else f' start="{start}"'
            blocks.append(f"<ol{attr}>" + "".join(f"<li>{i}</li>" for i in items) + "</ol>")
            items.clear()

    for paragraph in _PARAGRAPH_SPLIT_RE.split(text.strip("\n")):
        lines = paragraph.split("\n")
        run: list[str] = []  # text lines of the current <p>
        items: list[str] = []  # <li>s of the current <ol>
        start = 1
        for line in lines:
            m = _LIST_ITEM_RE.match(line.strip())
            if m and not first:
                flush_text(run)
                if not items:
                    start = int(m.group(1))
                items.append(html.escape(m.group(2).strip()))
                continue
            flush_list(items, start)
            escaped = html.escape(line)
            if first and bold_first_line and line.strip():
                escaped = f"<strong>{escaped}</strong>"
            run.append(escaped)
            first = False
        flush_list(items, start)
        flush_text(run)
        first = False
    return "".join(blocks)


def reply_content(
    reply: Reply,
    *,
    in_reply_to: str | None = None,
    thread_root: str | None = None,
    mention: str | None = None,
    msgtype: str = "m.notice",
) -> dict[str, Any]:
    """The ``m.room.message`` content of an answer: plain ``body`` + HTML ``formatted_body``, as a reply to the
    question (and in its thread, when it was asked in one). The first line of a curated answer (its question) is bold.
    """
    return text_content(
        reply.text,
        bold_first_line=reply.route is Route.FAQ,
        in_reply_to=in_reply_to,
        thread_root=thread_root,
        mention=mention,
        msgtype=msgtype,
    )


def text_content(
    text: str,
    *,
    bold_first_line: bool = False,
    in_reply_to: str | None = None,
    thread_root: str | None = None,
    mention: str | None = None,
    msgtype: str = "m.notice",
) -> dict[str, Any]:
    content: dict[str, Any] = {
        "msgtype": msgtype,
        "body": text,
        "format": HTML_FORMAT,
        "formatted_body": to_html(text, bold_first_line=bold_first_line),
        # Intentional mentions: notify the asker only (an empty object means "mention nobody").
        "m.mentions": {"user_ids": [mention]} if mention else {},
    }
    relates: dict[str, Any] = {}
    if thread_root:
        relates = {"rel_type": "m.thread", "event_id": thread_root, "is_falling_back": False}
    if in_reply_to:
        relates["m.in_reply_to"] = {"event_id": in_reply_to}
    if relates:
        content["m.relates_to"] = relates
    return content


# ---------------------------------------------------------------------------------------------- mentions
def mentions_user(content: dict[str, Any] | Any, user_id: str, display_name: str | None = None) -> bool:
    """True when a message mentions ``user_id``: in ``m.mentions``, as a matrix.to pill in the HTML, or by user id
    or display name in the plain body."""
    get = content.get
    mentions = get("m.mentions")
    if isinstance(mentions, dict) and user_id in (mentions.get("user_ids") or []):
        return True
    body = get("body") or ""
    if not isinstance(body, str):
        return False
    low = body.casefold()
    if user_id.casefold() in low:
        return True
    if display_name and len(display_name.strip()) >= 2 and display_name.strip().casefold() in low:
        return True
    formatted = get("formatted_body") or ""
    if isinstance(formatted, str) and "matrix.to/#/" in formatted:
        if user_id.casefold() in unquote(formatted).casefold():
            return True
    return False


def strip_mention(body: str, user_id: str, display_name: str | None = None) -> str:
    """The question without the bot's mention ("@faqbot:example.org: 社保卡丢了怎么办" -> "社保卡丢了怎么办")."""
    names = [user_id, user_id.split(":", 1)[0]]
    if display_name and len(display_name.strip()) >= 2:
        names.append(display_name.strip())
    out = body
    for name in sorted(set(names), key=len, reverse=True):
        out = re.sub(re.escape(name), " ", out, flags=re.IGNORECASE)
    return out.strip(_MENTION_PUNCT)


def looks_like_pick(body: str, n_choices: int) -> bool:
    """A bare choice number ("2", "２", "0") answering a numbered offer of ``n_choices``."""
    pick = "".join(ch for ch in body if ch.isalnum())
    return bool(pick) and pick.isdecimal() and len(pick) <= 3 and 0 <= int(pick) <= n_choices


# ---------------------------------------------------------------------------------------------- reactions
def reaction_kind(key: str | None) -> FeedbackKind | None:
    """UP for 👍 (any skin tone / variation selector), DOWN for 👎, else None."""
    if not key:
        return None
    bare = _EMOJI_DECORATION_RE.sub("", key).strip()
    if bare in (_THUMBS_UP, ":+1:", "+1"):
        return FeedbackKind.UP
    if bare in (_THUMBS_DOWN, ":-1:", "-1"):
        return FeedbackKind.DOWN
    return None


# ---------------------------------------------------------------------------------------------- allow-list
def server_of(identifier: str | None) -> str | None:
    """The server name of a room or user id ("!abc:example.org" -> "example.org"); None when it has none
    (room ids of room version 12 carry no server name)."""
    if not identifier or ":" not in identifier:
        return None
    return identifier.split(":", 1)[1].lower()


def room_allowed(room_id: str, allowed: Iterable[str], *, creator: str | None = None) -> bool:
    """Allow-list check: empty = every room; else the room id itself, or the server of the room (the server part of
    its id, or the creator's server for ids without one) must be listed."""
    entries = [a.strip() for a in allowed if a and a.strip()]
    if not entries:
        return True
    if room_id in entries:
        return True
    servers = {e.lower() for e in entries if not e.startswith(("!", "#", "@"))}
    server = server_of(room_id) or server_of(creator)
    return server is not None and server in servers
