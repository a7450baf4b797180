"""A loopback Telegram Bot API server for tests: a real HTTP server that a real ``aiogram.Bot`` talks to.

Usage::

    from tests.fakes.telegram_api import FakeBotAPI

    async def test_something():
        async with FakeBotAPI() as fake:                      # listens on 127.0.0.1:<random port>
            bot = fake.make_bot()                              # a real aiogram.Bot wired to the fake
            # (the long way: Bot(fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))))
            await bot.send_message(fake.user_id, "你好")
            [call] = fake.sent_messages(chat_id=fake.user_id)
            assert call.params["text"] == "你好"
            await bot.session.close()

    # feed the bot (polling picks these up through getUpdates):
    fake.push_update(fake.message_update("电子社保卡怎么申领？", user_id=1001))
    await fake.wait_for("sendMessage")                         # -> list[Call]

    # faults: the next call(s) of a method fail like the real service would
    fake.fail("sendMessage", status=429, retry_after=3)         # -> aiogram TelegramRetryAfter
    fake.fail("sendMessage", status=502)                         # HTML body, as nginx answers -> ClientDecodeError
    fake.fail("sendMessage", status=0)                           # connection dropped -> TelegramNetworkError
    fake.undecodable("sendMessage")                              # carried out, but the 200 answer is unreadable
    fake.set_delay("sendMessage", 0.5)

What it mimics (checked against aiogram 3.31's ``AiohttpSession`` / ``BaseSession``):

* ``POST /bot<token>/<method>`` (method names case-insensitive, GET with a query string and JSON bodies also
  accepted); a wrong token gets 401, an unknown method 404, both with Telegram's JSON error shape.
* aiogram sends form data: every value a string, nested objects (``reply_markup``, ``entities``,
  ``reply_parameters``, ``commands``...) as JSON strings, falsy values omitted. :attr:`Call.params` holds the decoded
  values (ints, bools, dicts, lists); free-text fields such as ``text`` stay strings. The raw strings are in
  :attr:`Call.raw`.
* Messages the bot sends get per-chat increasing ``message_id`` (shared with the ids of injected user messages, as in a
  real chat), ``from`` = the bot, ``date``, ``entities``, ``reply_markup``, ``message_thread_id``, and
  ``reply_to_message`` when the replied-to message is known. They are kept so ``editMessageText`` can check them: like
  Telegram it answers 400 "message is not modified" / "message to edit not found" (``strict_edits=False`` turns that
  off). ``sendMessage`` rejects empty text and text longer than 4096 UTF-16 code units with Telegram's 400 errors.
* Webhooks: ``setWebhook`` stores the url and secret; :meth:`FakeBotAPI.deliver_webhook` POSTs an update there.
* ``getUpdates`` long-polls (up to ``timeout`` s), drops updates below ``offset`` (confirmed), honours ``limit`` and
  ``allowed_updates``; a newer ``getUpdates`` terminates a waiting one with 409, and it answers 409 while a webhook is
  set -- both as Telegram does.

All of it runs on the test's event loop; call :meth:`push_update`, :meth:`fail` etc. from that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

from bot.telegram.session import BotSession

__all__ = ["Call", "FakeBotAPI", "LoopbackSession", "utf16_len"]

# Form fields whose value is free text: never JSON-decoded (a message "123" must stay the string "123").
TEXT_FIELDS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "url",
        "secret_token",
        "ip_address",
        "action",
        "emoji",
        "description",
        "short_description",
        "name",
        "title",
        "language_code",
        "business_connection_id",
        "inline_message_id",
        "message_effect_id",
        "custom_emoji_id",
        "file_id",
        "sticker",
        "photo",
        "voice",
        "document",
        "audio",
        "video",
        "animation",
        "video_note",
        "question",
        "explanation",
        "query",
        "start_parameter",
        "switch_pm_text",
        "switch_pm_parameter",
        "next_offset",
        "game_short_name",
    }
)

UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)

# What an nginx in front of the real API answers when the backend is down (not JSON!).
BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
)

DEFAULT_DESCRIPTIONS = {
    400: "Bad Request: bad request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
}

# Canonical camelCase names of the methods served, keyed by lower case (Telegram ignores the case).
_METHODS = [
    "getMe",
    "getUpdates",
    "deleteWebhook",
    "setWebhook",
    "getWebhookInfo",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "setMyDescription",
    "setMyShortDescription",
    "setChatMenuButton",
    "sendMessage",
    "editMessageText",
    "editMessageReplyMarkup",
    "sendMessageDraft",
    "sendChatAction",
    "answerCallbackQuery",
    "deleteMessage",
    "getChat",
    "setMessageReaction",
    "close",
    "logOut",
]
_CANONICAL = {m.lower(): m for m in _METHODS}


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit Telegram uses for limits and entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _decode_value(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in TEXT_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


@dataclass
class Call:
    """One request the fake received (recorded on arrival, before any delay or long poll)."""

    method: str  # canonical camelCase name when known, else as sent
    params: dict[str, Any]  # decoded: ints, bools, dicts/lists from JSON strings; text fields stay str
    ts: float  # time.monotonic() on arrival
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # form values as sent (strings)
    failed: bool = False  # answered with an injected fault or a Telegram error
    status: int | None = None  # HTTP status of the answer (None until answered; 0 = connection dropped)
    result: Any = None  # the ``result`` sent back (e.g. the Message dict for sendMessage)
    error: str | None = None  # description of the error, if any

    @property
    def text(self) -> str | None:
        return self.params.get("text")

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")


class LoopbackSession(BotSession):
    """The bot's `BotSession` (an ``AiohttpSession``) whose ``close()`` skips aiogram's 0.25 s wait for SSL shutdown
    (there is none on loopback)."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    times: int
    description: str | None
    garble: str | None = None  # status 200: "syntax" or "schema" (see FakeBotAPI.undecodable)


class _TelegramError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


class FakeBotAPI:
    """Loopback Telegram Bot API server (see the module docstring for usage).

    :param token: bot token the requests must carry; defaults to ``"<bot_id>:AAFakeTokenForTests"``
    :param bot_id: the bot's user id (aiogram derives ``bot.id`` from the token prefix, so keep them equal)
    :param username: the bot's @username, without ``@``
    :param first_name: the bot's display name
    :param user_id: default user for the update builders (private chat id == user id)
    :param group_id: default chat id for group updates (supergroups have ``-100...`` ids)
    :param strict_edits: answer 400 for edits of unknown messages or edits that change nothing, as Telegram does
    :param privacy_mode: drop group messages the bot would not see with privacy mode on (not a command, not a
        reply to the bot, no @mention); :meth:`push_update` then returns ``None``
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        bot_id: int = 42,
        username: str = "faq_test_bot",
        first_name: str = "社保卡助手",
        user_id: int = 1001,
        group_id: int = -1001234567890,
        host: str = "127.0.0.1",
        port: int = 0,
        strict_edits: bool = True,
        privacy_mode: bool = False,
    ) -> None:
        if token is None:
            token = f"{bot_id}:AAFakeTokenForTests"
        else:
            prefix = token.partition(":")[0]
            if prefix.isdigit():
                bot_id = int(prefix)
        self.token = token
        self.bot_id = bot_id
        self.username = username
        self.first_name = first_name
        self.user_id = user_id
        self.group_id = group_id
        self.host = host
        self.port = port
        self.strict_edits = strict_edits
        self.privacy_mode = privacy_mode

        self.calls: list[Call] = []
        self.updates: list[dict[str, Any]] = []  # pending (unconfirmed) updates, ascending update_id
        self.chats: dict[int, dict[str, Any]] = {}  # chat objects seen in injected updates
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}  # (chat_id, message_id) -> Message dict
        self.commands: dict[str, list[dict[str, Any]]] = {}  # scope/language key -> commands
        self.webhook_url: str = ""
        self.webhook_secret: str | None = None
        self.allowed_updates: list[str] | None = None

        self._next_update_id = 500_000_001
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._update_waiters: set[asyncio.Future[None]] = set()
        self._call_waiters: set[asyncio.Future[None]] = set()
        self._poller: asyncio.Future[None] | None = None  # set when a newer getUpdates terminates this one
        self._closing: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._started_at = time.monotonic()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> FakeBotAPI:
        """Start listening; :attr:`base_url` is valid afterwards."""
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gives up (timeout, stop_polling) cancels its long poll here too.
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - the only way to learn the port picked for port=0
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop: wakes long polls and delayed calls, then closes the server (well under a second)."""
        if self._closing is not None:
            self._closing.set()
        for fut in list(self._update_waiters) + list(self._call_waiters):
            if not fut.done():
                fut.set_result(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotAPI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` -- give it to ``TelegramAPIServer.from_base``."""
        return f"http://{self.host}:{self.port}"

    def make_bot(self, **bot_kwargs: Any) -> Bot:
        """A real ``aiogram.Bot`` wired to this server (token included).

        Close it with ``await bot.session.close()`` (fast: :class:`LoopbackSession` skips aiogram's 0.25 s SSL
        grace sleep). ``bot_kwargs`` go to ``Bot`` (e.g. ``default=DefaultBotProperties(...)``).
        """
        session = LoopbackSession(api=TelegramAPIServer.from_base(self.base_url))
        return Bot(self.token, session=session, **bot_kwargs)

    # ------------------------------------------------------------------ inspection
    def calls_to(self, method: str) -> list[Call]:
        """Recorded calls of ``method`` (case-insensitive), failed ones included."""
        m = method.lower()
        return [c for c in self.calls if c.method.lower() == m]

    def sent_messages(self, chat_id: int | str | None = None) -> list[Call]:
        """Successful ``sendMessage`` calls, optionally only those to ``chat_id``."""
        return [
            c
            for c in self.calls_to("sendMessage")
            if not c.failed and (chat_id is None or c.params.get("chat_id") == chat_id)
        ]

    def sent_texts(self, chat_id: int | str | None = None) -> list[str]:
        """The ``text`` of every successful ``sendMessage`` (to ``chat_id``)."""
        return [c.params.get("text", "") for c in self.sent_messages(chat_id)]

    def reset_calls(self) -> None:
        """Forget the recorded calls (updates, messages and faults are kept)."""
        self.calls.clear()

    async def wait_for(
        self,
        what: str | Callable[[Call], bool],
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[Call]:
        """Wait until at least ``count`` recorded calls match, and return all matching calls.

        ``what`` is a method name (case-insensitive) or a predicate on :class:`Call`. Waiting is event-driven (no
        sleeping loop). Raises ``TimeoutError`` listing the methods seen so far.
        """
        if isinstance(what, str):
            name = what.lower()

            def pred(c: Call) -> bool:
                return c.method.lower() == name
        else:
            pred = what
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matches = [c for c in self.calls if pred(c)]
            if len(matches) >= count:
                return matches
            remaining = deadline - loop.time()
            if remaining <= 0 or (self._closing is not None and self._closing.is_set()):
                seen = [c.method for c in self.calls]
                raise TimeoutError(
                    f"wait_for({what!r}, count={count}): {len(matches)} match(es) after {timeout}s; calls: {seen}"
                )
            fut = loop.create_future()
            self._call_waiters.add(fut)
            try:
                await asyncio.wait_for(asyncio.shield(fut), remaining)
            except TimeoutError:
                pass
            finally:
                self._call_waiters.discard(fut)

    # ------------------------------------------------------------------ behaviour control
    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = None,
        times: int = 1,
        description: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (``"*"`` = any method) fail.

        * 429 -> ``{"ok": false, "error_code": 429, "description": "Too Many Requests: retry after N",
          "parameters": {"retry_after": N}}`` (N = ``retry_after``, default 1) -> aiogram ``TelegramRetryAfter``
        * 502/503/504 -> an nginx HTML page, not JSON (aiogram raises ``ClientDecodeError``)
        * 0 -> the connection is closed without an answer (aiogram raises ``TelegramNetworkError``)
        * any other status -> Telegram's JSON error shape with that ``error_code`` (500 -> ``TelegramServerError``,
          400 -> ``TelegramBadRequest``, 403 -> ``TelegramForbiddenError``...); ``description`` overrides the text.

        Failed calls are recorded with ``failed=True``. Faults queue up: ``fail(m, status=429); fail(m, status=502)``
        fails the next two calls in that order.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        key = "*" if method == "*" else method.lower()
        self._faults.setdefault(key, []).append(_Fault(status, retry_after, times, description))

    def undecodable(self, method: str, *, kind: str = "syntax", times: int = 1) -> None:
        """The next ``times`` calls of ``method`` are CARRIED OUT (a sendMessage reaches the chat and is recorded
        as a successful call), but answered with HTTP 200 and a body the client cannot read -- a proxy that
        rewrites bodies, an emulator, a version skew. aiogram raises ``ClientDecodeError`` either way.

        * ``kind="syntax"``: ``{"ok": true, "result": ...`` cut short (not JSON; the error's ``data`` is the text)
        * ``kind="schema"``: valid JSON ``{"ok": true, "result": {"unreadable": <the real result>}}`` that does not
          fit the method's result type (the error's ``data`` is the decoded dict)

        Queued together with :meth:`fail` faults, in order.
        """
        if kind not in ("syntax", "schema"):
            raise ValueError(f"kind must be 'syntax' or 'schema', not {kind!r}")
        key = "*" if method == "*" else method.lower()
        self._faults.setdefault(key, []).append(_Fault(200, None, times, None, garble=kind))

    def set_delay(self, method: str, seconds: float) -> None:
        """Delay every answer to ``method`` by ``seconds`` (0 removes the delay); ``"*"`` = every method."""
        key = "*" if method == "*" else method.lower()
        if seconds > 0:
            self._delays[key] = seconds
        else:
            self._delays.pop(key, None)

    # ------------------------------------------------------------------ updates
    def push_update(self, update: dict[str, Any]) -> dict[str, Any] | None:
        """Queue ``update`` for ``getUpdates`` (assigns ``update_id`` if missing) and wake a waiting long poll.

        Returns the update, or ``None`` when ``privacy_mode`` hides it from the bot.
        """
        if self.privacy_mode and not self._visible_with_privacy(update):
            return None
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
        self.updates.append(update)
        self.updates.sort(key=lambda u: u["update_id"])
        for fut in list(self._update_waiters):
            if not fut.done():
                fut.set_result(None)
        return update

    async def deliver_webhook(
        self, update: dict[str, Any], *, url: str | None = None, secret_token: str | None = None, timeout: float = 10.0
    ) -> tuple[int, str]:
        """POST ``update`` to the webhook (``url`` or the one set with ``setWebhook``), as Telegram does.

        Sends the JSON update with ``X-Telegram-Bot-Api-Secret-Token`` (``secret_token`` or the one given to
        ``setWebhook``); assigns ``update_id`` if missing. Returns ``(HTTP status, response body)``.
        """
        target = url or self.webhook_url
        if not target:
            raise RuntimeError("no webhook set: call setWebhook first or pass url=")
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
        headers = {}
        secret = secret_token if secret_token is not None else self.webhook_secret
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        async with (
            aiohttp.ClientSession() as http,
            http.post(target, json=update, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as resp,
        ):
            return resp.status, await resp.text()

    def push_message(self, text: str, **kwargs: Any) -> dict[str, Any] | None:
        """Shortcut: ``push_update(message_update(text, **kwargs))``."""
        return self.push_update(self.message_update(text, **kwargs))

    def _visible_with_privacy(self, update: dict[str, Any]) -> bool:
        msg = update.get("message") or update.get("edited_message")
        if not msg or msg["chat"]["type"] == "private":
            return True
        text = msg.get("text") or msg.get("caption") or ""
        if text.startswith("/"):
            command = text.split()[0]
            target = command.partition("@")[2]
            return not target or target.lower() == self.username.lower()
        if f"@{self.username}".lower() in text.lower():
            return True
        reply = msg.get("reply_to_message") or {}
        return (reply.get("from") or {}).get("id") == self.bot_id

    # ------------------------------------------------------------------ builders (plain dicts)
    def bot_user(self) -> dict[str, Any]:
        """The bot as a Telegram ``User`` dict (what getMe returns)."""
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    @staticmethod
    def user(
        user_id: int, *, first_name: str = "张三", username: str | None = None, language_code: str = "zh-hans"
    ) -> dict[str, Any]:
        """A human ``User`` dict."""
        u: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": language_code}
        if username:
            u["username"] = username
        return u

    def chat(
        self,
        chat_id: int,
        *,
        chat_type: str | None = None,
        first_name: str = "张三",
        username: str | None = None,
        title: str = "社保卡测试群",
        is_forum: bool = False,
    ) -> dict[str, Any]:
        """A ``Chat`` dict (remembered, so the bot's replies to that chat carry the same object)."""
        if chat_type is None:
            known = self.chats.get(chat_id)
            if known is not None:
                return dict(known)
            chat_type = "private" if chat_id > 0 else "supergroup"
        if chat_type == "private":
            c: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": first_name}
            if username:
                c["username"] = username
        else:
            c = {"id": chat_id, "type": chat_type, "title": title}
            if is_forum:
                c["is_forum"] = True
        self.chats[chat_id] = c
        return dict(c)

    def next_message_id(self, chat_id: int) -> int:
        """Next message id in ``chat_id`` (user and bot messages share the sequence, as in a real chat)."""
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        return next(counter)

    def _base_message(
        self,
        *,
        chat_id: int | None,
        user_id: int | None,
        chat_type: str,
        message_id: int | None,
        reply_to: int | dict[str, Any] | None,
        thread_id: int | None,
        username: str | None,
        first_name: str,
    ) -> dict[str, Any]:
        if user_id is None:
            user_id = self.user_id
        if chat_id is None:
            chat_id = user_id if chat_type == "private" else self.group_id
        if chat_type == "private" and chat_id != user_id:
            raise ValueError(f"in a private chat chat_id == user_id (got chat_id={chat_id}, user_id={user_id})")
        chat = self.chat(
            chat_id, chat_type=chat_type, first_name=first_name, username=username, is_forum=thread_id is not None
        )
        if message_id is None:
            message_id = self.next_message_id(chat_id)
        msg: dict[str, Any] = {
            "message_id": message_id,
            "from": self.user(user_id, first_name=first_name, username=username),
            "chat": chat,
            "date": int(time.time()),
        }
        if thread_id is not None:
            msg["message_thread_id"] = thread_id
            msg["is_topic_message"] = True
        if reply_to is not None:
            msg["reply_to_message"] = self._reply_target(chat_id, reply_to)
        return msg

    def _reply_target(self, chat_id: int, reply_to: int | dict[str, Any]) -> dict[str, Any]:
        if isinstance(reply_to, dict):
            return reply_to
        known = self.messages.get((chat_id, reply_to))
        if known is not None:
            target = dict(known)
            target.pop("reply_to_message", None)  # Telegram nests only one level
            return target
        return {"message_id": reply_to, "chat": self.chat(chat_id), "date": int(time.time())}

    def _auto_entities(self, text: str) -> list[dict[str, Any]]:
        """bot_command / mention entities, which Telegram's servers add to user messages."""
        entities = []
        pos = 0
        for word in text.split(" "):
            if word:
                offset = utf16_len(text[:pos])
                if word.startswith("/") and pos == 0:
                    entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(word)})
                elif word.startswith("@") and len(word) > 1:
                    entities.append({"type": "mention", "offset": offset, "length": utf16_len(word)})
            pos += len(word) + 1
        return entities

    def message_update(
        self,
        text: str,
        *,
        chat_id: int | None = None,
        user_id: int | None = None,
        chat_type: str = "private",
        message_id: int | None = None,
        reply_to: int | dict[str, Any] | None = None,
        thread_id: int | None = None,
        entities: list[dict[str, Any]] | None = None,
        username: str | None = None,
        first_name: str = "张三",
    ) -> dict[str, Any]:
        """An update with a text ``message`` from a user.

        Defaults: ``user_id`` = :attr:`user_id`; ``chat_id`` = the user id in private chats, :attr:`group_id` for
        ``chat_type="group"/"supergroup"``. ``reply_to`` is a message id (the stored message is embedded when known,
        e.g. one the bot sent) or a Message dict. ``entities=None`` adds the bot_command/mention entities Telegram
        would; pass ``[]`` for none. ``thread_id`` makes it a forum-topic message.
        """
        msg = self._base_message(
            chat_id=chat_id,
            user_id=user_id,
            chat_type=chat_type,
            message_id=message_id,
            reply_to=reply_to,
            thread_id=thread_id,
            username=username,
            first_name=first_name,
        )
        msg["text"] = text
        ents = self._auto_entities(text) if entities is None else entities
        if ents:
            msg["entities"] = ents
        self.messages[(msg["chat"]["id"], msg["message_id"])] = msg
        return {"message": msg}

    def edited_message_update(
        self,
        text: str,
        *,
        message_id: int,
        chat_id: int | None = None,
        user_id: int | None = None,
        chat_type: str = "private",
        thread_id: int | None = None,
        username: str | None = None,
        first_name: str = "张三",
    ) -> dict[str, Any]:
        """An ``edited_message`` update: the user changed message ``message_id`` to ``text``."""
        msg = self._base_message(
            chat_id=chat_id,
            user_id=user_id,
            chat_type=chat_type,
            message_id=message_id,
            reply_to=None,
            thread_id=thread_id,
            username=username,
            first_name=first_name,
        )
        original = self.messages.get((msg["chat"]["id"], message_id))
        if original is not None:
            msg["date"] = original["date"]
        msg["text"] = text
        msg["edit_date"] = int(time.time())
        ents = self._auto_entities(text)
        if ents:
            msg["entities"] = ents
        self.messages[(msg["chat"]["id"], message_id)] = msg
        return {"edited_message": msg}

    def sticker_update(
        self,
        *,
        emoji: str = "👍",
        chat_id: int | None = None,
        user_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
        first_name: str = "张三",
    ) -> dict[str, Any]:
        """A message with a sticker and no text."""
        msg = self._base_message(
            chat_id=chat_id,
            user_id=user_id,
            chat_type=chat_type,
            message_id=None,
            reply_to=None,
            thread_id=None,
            username=username,
            first_name=first_name,
        )
        uid = secrets.token_hex(4)
        msg["sticker"] = {
            "file_id": f"CAACAgIAAxkBAAI{uid}",
            "file_unique_id": f"AgAD{uid}",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "set_name": "TestStickers",
            "file_size": 23456,
        }
        self.messages[(msg["chat"]["id"], msg["message_id"])] = msg
        return {"message": msg}

    def photo_update(
        self,
        *,
        caption: str | None = None,
        chat_id: int | None = None,
        user_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
        first_name: str = "张三",
    ) -> dict[str, Any]:
        """A message with a photo (three sizes, as Telegram sends) and an optional caption."""
        msg = self._base_message(
            chat_id=chat_id,
            user_id=user_id,
            chat_type=chat_type,
            message_id=None,
            reply_to=None,
            thread_id=None,
            username=username,
            first_name=first_name,
        )
        uid = secrets.token_hex(4)
        msg["photo"] = [
            {
                "file_id": f"AgACAgUAAxkBAAI{uid}{w}",
                "file_unique_id": f"AQAD{uid}{w}",
                "width": w,
                "height": w * 3 // 4,
                "file_size": w * 60,
            }
            for w in (90, 320, 1280)
        ]
        if caption:
            msg["caption"] = caption
        self.messages[(msg["chat"]["id"], msg["message_id"])] = msg
        return {"message": msg}

    def voice_update(
        self,
        *,
        duration: int = 3,
        chat_id: int | None = None,
        user_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
        first_name: str = "张三",
    ) -> dict[str, Any]:
        """A message with a voice note and no text."""
        msg = self._base_message(
            chat_id=chat_id,
            user_id=user_id,
            chat_type=chat_type,
            message_id=None,
            reply_to=None,
            thread_id=None,
            username=username,
            first_name=first_name,
        )
        uid = secrets.token_hex(4)
        msg["voice"] = {
            "file_id": f"AwACAgUAAxkBAAI{uid}",
            "file_unique_id": f"AgAD{uid}",
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": duration * 4000,
        }
        self.messages[(msg["chat"]["id"], msg["message_id"])] = msg
        return {"message": msg}

    def callback_update(
        self,
        data: str,
        *,
        message: dict[str, Any],
        user_id: int | None = None,
        chat_id: int | None = None,
        username: str | None = None,
        first_name: str = "张三",
    ) -> dict[str, Any]:
        """A ``callback_query`` update: a user pressed an inline button with ``data`` under ``message``.

        ``message`` is the bot's Message dict -- e.g. ``call.result`` of the ``sendMessage`` that carried the
        keyboard. ``user_id`` defaults to the chat id for private chats, else :attr:`user_id`.
        """
        if chat_id is not None and message["chat"]["id"] != chat_id:
            message = {**message, "chat": self.chat(chat_id)}
        if user_id is None:
            chat = message["chat"]
            user_id = chat["id"] if chat["type"] == "private" else self.user_id
        return {
            "callback_query": {
                "id": str(secrets.randbits(62)),
                "from": self.user(user_id, first_name=first_name, username=username),
                "message": message,
                "chat_instance": str(abs(hash((message["chat"]["id"], self.bot_id))) % 10**18),
                "data": data,
            }
        }

    # ------------------------------------------------------------------ HTTP
    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        raw: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    raw.update(body)
            else:
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        content = value.file.read()
                        raw[key] = {"filename": value.filename, "size": len(content), "content": content}
                    else:
                        raw[key] = value
        return raw

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot"):
            return self._json_error(404, "Not Found")
        token, method_sent = parts[0][3:], parts[1]
        raw = await self._read_params(request)
        method = _CANONICAL.get(method_sent.lower(), method_sent)
        call = Call(
            method=method, params={k: _decode_value(k, v) for k, v in raw.items()}, ts=time.monotonic(), raw=raw
        )
        self._record(call)

        if token != self.token:
            return self._answer_error(call, 401, "Unauthorized")
        fault = self._take_fault(method.lower())
        delay = self._delays.get(method.lower(), self._delays.get("*", 0.0))
        if delay:
            await self._sleep(delay)
        if fault is not None and fault.garble is None:
            return self._answer_fault(call, request, fault)
        handler = getattr(self, f"_m_{method.lower()}", None) if method.lower() in _CANONICAL else None
        if handler is None:
            return self._answer_error(call, 404, "Not Found")
        try:
            result = handler(call.params)
            if asyncio.iscoroutine(result):
                result = await result
        except _TelegramError as e:
            return self._answer_error(call, e.status, e.description, e.parameters)
        call.status, call.result = 200, result
        if fault is not None:  # carried out, answered unreadably
            if fault.garble == "schema":
                return web.json_response({"ok": True, "result": {"unreadable": result}})
            body = json.dumps({"ok": True, "result": result}, ensure_ascii=False)  # Telegram sends UTF-8 as is
            return web.Response(text=body[:-1], content_type="application/json")
        return web.json_response({"ok": True, "result": result})

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        for fut in list(self._call_waiters):
            if not fut.done():
                fut.set_result(None)

    def _take_fault(self, key: str) -> _Fault | None:
        for k in (key, "*"):
            queue = self._faults.get(k)
            if queue:
                fault = queue[0]
                fault.times -= 1
                if fault.times <= 0:
                    queue.pop(0)
                return fault
        return None

    async def _sleep(self, seconds: float) -> None:
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _answer_fault(self, call: Call, request: web.Request, fault: _Fault) -> web.StreamResponse:
        call.failed = True
        call.status = fault.status
        if fault.status == 0:
            call.error = "connection dropped"
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never reaches the client
        if fault.status in (502, 503, 504):
            call.error = f"{fault.status} (HTML)"
            body = BAD_GATEWAY_HTML.replace("502 Bad Gateway", f"{fault.status} {_reason(fault.status)}")
            return web.Response(status=fault.status, text=body, content_type="text/html")
        description = fault.description or DEFAULT_DESCRIPTIONS.get(fault.status, _reason(fault.status))
        parameters = None
        if fault.retry_after is not None:
            description = description.format(retry_after=fault.retry_after)
            parameters = {"retry_after": fault.retry_after}
        return self._answer_error(call, fault.status, description, parameters)

    def _answer_error(
        self, call: Call, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> web.Response:
        call.failed, call.status, call.error = True, status, description
        return self._json_error(status, description, parameters)

    @staticmethod
    def _json_error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    # ------------------------------------------------------------------ methods
    @staticmethod
    def _require(params: dict[str, Any], *names: str) -> None:
        for name in names:
            if params.get(name) in (None, ""):
                raise _TelegramError(
                    400,
                    f"Bad Request: {name} is empty"
                    if name == "text"
                    else f'Bad Request: parameter "{name}" is required',
                )

    def _chat_for(self, chat_id: Any) -> dict[str, Any]:
        if isinstance(chat_id, int):
            return self.chat(chat_id)
        raise _TelegramError(400, "Bad Request: chat not found")

    def _m_getme(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.bot_user()

    async def _m_getupdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise _TelegramError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        # A newer getUpdates terminates the one still waiting (that one gets 409), as Telegram does.
        if self._poller is not None and not self._poller.done():
            self._poller.set_result(None)
        me: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._poller = me

        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self.allowed_updates = allowed or None  # Telegram remembers the last list; [] = default (all)
        offset = int(params.get("offset") or 0)
        limit = max(1, min(100, int(params.get("limit") or 100)))
        timeout = max(0.0, float(params.get("timeout") or 0))

        if offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        elif offset < 0:
            self.updates = self.updates[offset:]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._drop_disallowed()
            if self.updates or (self._closing is not None and self._closing.is_set()):
                break
            if me.done():
                raise _TelegramError(409, DEFAULT_DESCRIPTIONS[409])
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            waiter = loop.create_future()
            self._update_waiters.add(waiter)
            try:
                await asyncio.wait([waiter, me], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._update_waiters.discard(waiter)
                waiter.cancel()
        if self._poller is me:
            self._poller = None
        return [dict(u) for u in self.updates[:limit]]

    def _drop_disallowed(self) -> None:
        if self.allowed_updates:
            allowed = set(self.allowed_updates)
            self.updates = [u for u in self.updates if any(k in allowed for k in u if k != "update_id")]

    def _m_setwebhook(self, params: dict[str, Any]) -> bool:
        self._require(params, "url")
        self.webhook_url = params["url"]
        self.webhook_secret = params.get("secret_token") or None
        if params.get("drop_pending_updates"):
            self.updates.clear()
        return True

    def _m_deletewebhook(self, params: dict[str, Any]) -> bool:
        self.webhook_url = ""
        self.webhook_secret = None
        if params.get("drop_pending_updates"):
            self.updates.clear()
        return True

    def _m_getwebhookinfo(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": len(self.updates)}

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> str:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps([scope, params.get("language_code") or ""], sort_keys=True)

    def _m_setmycommands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _TelegramError(400, "Bad Request: can't parse commands JSON object")
        self.commands[self._commands_key(params)] = commands
        return True

    def _m_getmycommands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self.commands.get(self._commands_key(params), [])

    def _m_deletemycommands(self, params: dict[str, Any]) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    def _m_setmydescription(self, params: dict[str, Any]) -> bool:
        return True

    _m_setmyshortdescription = _m_setmydescription
    _m_setchatmenubutton = _m_setmydescription
    _m_close = _m_setmydescription
    _m_logout = _m_setmydescription

    def _m_sendmessage(self, params: dict[str, Any]) -> dict[str, Any]:
        self._require(params, "chat_id")
        text = params.get("text")
        if not text or not str(text).strip():
            raise _TelegramError(400, "Bad Request: message text is empty")
        if utf16_len(text) > 4096:
            raise _TelegramError(400, "Bad Request: message is too long")
        chat = self._chat_for(params["chat_id"])
        msg: dict[str, Any] = {
            "message_id": self.next_message_id(chat["id"]),
            "from": self.bot_user(),
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        thread_id = params.get("message_thread_id")
        if thread_id:
            msg["message_thread_id"] = thread_id
            msg["is_topic_message"] = True
        reply = params.get("reply_parameters")
        if isinstance(reply, dict) and reply.get("message_id"):
            msg["reply_to_message"] = self._reply_target(chat["id"], reply["message_id"])
        elif params.get("reply_to_message_id"):
            msg["reply_to_message"] = self._reply_target(chat["id"], params["reply_to_message_id"])
        if params.get("entities"):
            msg["entities"] = params["entities"]
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            msg["reply_markup"] = markup  # only inline keyboards are echoed back in a Message
        if params.get("link_preview_options"):
            msg["link_preview_options"] = params["link_preview_options"]
        self.messages[(chat["id"], msg["message_id"])] = msg
        return msg

    def _stored_message(self, params: dict[str, Any]) -> dict[str, Any] | None:
        self._require(params, "chat_id", "message_id")
        msg = self.messages.get((params["chat_id"], params["message_id"]))
        if msg is None and self.strict_edits:
            raise _TelegramError(400, "Bad Request: message to edit not found")
        return msg

    def _m_editmessagetext(self, params: dict[str, Any]) -> dict[str, Any] | bool:
        text = params.get("text")
        if not text or not str(text).strip():
            raise _TelegramError(400, "Bad Request: message text is empty")
        if utf16_len(text) > 4096:
            raise _TelegramError(400, "Bad Request: MESSAGE_TOO_LONG")
        if params.get("inline_message_id"):
            return True
        msg = self._stored_message(params)
        if msg is None:  # strict_edits off: make one up
            msg = {
                "message_id": params["message_id"],
                "from": self.bot_user(),
                "chat": self._chat_for(params["chat_id"]),
                "date": int(time.time()),
            }
        markup = params.get("reply_markup")
        new = dict(msg)
        new["text"] = text
        new.pop("entities", None)
        if params.get("entities"):
            new["entities"] = params["entities"]
        new.pop("reply_markup", None)
        if isinstance(markup, dict) and markup.get("inline_keyboard"):
            new["reply_markup"] = markup
        if self.strict_edits and (new.get("text"), new.get("entities"), new.get("reply_markup")) == (
            msg.get("text"),
            msg.get("entities"),
            msg.get("reply_markup"),
        ):
            raise _TelegramError(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup "
                "of the message",
            )
        new["edit_date"] = int(time.time())
        self.messages[(new["chat"]["id"], new["message_id"])] = new
        return new

    def _m_editmessagereplymarkup(self, params: dict[str, Any]) -> dict[str, Any] | bool:
        if params.get("inline_message_id"):
            return True
        msg = self._stored_message(params)
        if msg is None:
            msg = {
                "message_id": params["message_id"],
                "from": self.bot_user(),
                "chat": self._chat_for(params["chat_id"]),
                "date": int(time.time()),
            }
        markup = params.get("reply_markup")
        new = dict(msg)
        new.pop("reply_markup", None)
        if isinstance(markup, dict) and markup.get("inline_keyboard"):
            new["reply_markup"] = markup
        if self.strict_edits and new.get("reply_markup") == msg.get("reply_markup"):
            raise _TelegramError(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup "
                "of the message",
            )
        new["edit_date"] = int(time.time())
        self.messages[(new["chat"]["id"], new["message_id"])] = new
        return new

    def _m_sendmessagedraft(self, params: dict[str, Any]) -> bool:
        self._require(params, "chat_id", "draft_id")
        chat = self._chat_for(params["chat_id"])
        if chat["type"] != "private":
            # Drafts exist only in private chats (the exact wording of Telegram's error is not verified).
            raise _TelegramError(400, "Bad Request: TEXTDRAFT_PEER_INVALID")
        return True

    def _m_sendchataction(self, params: dict[str, Any]) -> bool:
        self._require(params, "chat_id", "action")
        return True

    def _m_answercallbackquery(self, params: dict[str, Any]) -> bool:
        self._require(params, "callback_query_id")
        return True

    def _m_setmessagereaction(self, params: dict[str, Any]) -> bool:
        self._require(params, "chat_id", "message_id")
        return True

    def _m_deletemessage(self, params: dict[str, Any]) -> bool:
        self._require(params, "chat_id", "message_id")
        if self.messages.pop((params["chat_id"], params["message_id"]), None) is None and self.strict_edits:
            raise _TelegramError(400, "Bad Request: message to delete not found")
        return True

    def _m_getchat(self, params: dict[str, Any]) -> dict[str, Any]:
        self._require(params, "chat_id")
        chat = self._chat_for(params["chat_id"])
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def methods_served() -> Iterable[str]:
    """The Bot API methods this fake implements (others answer 404 like an unknown method)."""
    return tuple(_METHODS)
