"""A loopback OpenAI-compatible chat server for tests, driven by the real ``openai.AsyncOpenAI`` client.

Usage::

    import openai
    from tests.fakes.openai_server import FakeOpenAI, reply, status, hang, stream_then_drop

    async def test_fallback():
        async with FakeOpenAI() as llm:
            llm.script(reply("您好，电子社保卡可以在掌上12333申领。"), status(500))
            client = openai.AsyncOpenAI(base_url=llm.base_url + "/v1", api_key="test-key", max_retries=0)
            out = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "怎么申领"}])
            assert out.choices[0].message.content.startswith("您好")
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="m", messages=[...])   # second scripted behaviour
            assert llm.headers[0]["Authorization"] == "Bearer test-key"
            assert "怎么申领" in llm.prompt_text(0)
            await client.close()

Endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models`` (anything else: 404 in OpenAI's error shape).

Each chat request consumes the next behaviour queued with :meth:`FakeOpenAI.script`; when the queue is empty the
``default`` behaviour answers (``reply("这是测试模型的回答。")`` unless given). Behaviours:

=============================  =====================================================================================
``reply(text)``                a completion; as SSE chunks (``choices[0].delta.content``, then ``finish_reason``
                               "stop", then ``data: [DONE]``) when the request has ``stream: true``
``status(code, body, retry)``  an HTTP error with OpenAI's ``{"error": {...}}`` body; ``retry_after`` sets the
                               ``Retry-After`` header (500 -> InternalServerError, 429 -> RateLimitError...)
``hang(seconds, then=None)``   wait, then answer with ``then`` (default: a reply); a client disconnect ends it, and
                               server shutdown ends it by dropping the connection
``malformed(kind="json")``     200 with a truncated JSON body (non-stream) or an SSE event that is not JSON (stream);
                               ``kind="html"``: a 200 text/html page
``empty()``                    200 with ``content: ""`` (stream: only the role chunk and the stop chunk)
``stream_then_drop(text, n)``  sends ``n`` chunks, then closes the connection without finishing the response
``echo_messages()``            replies with ``json.dumps(messages, ensure_ascii=False)`` of the request
=============================  =====================================================================================

Request checks, as the real servers make them (both on by default; each failure is a 400 in OpenAI's error shape
with ``param`` set, before any scripted behaviour is consumed):

* OpenAI's rules for reasoning models (names starting o1/o3/o4/gpt-5, see :data:`REASONING_MODEL_PREFIXES`):
  ``max_tokens`` is refused ("Use 'max_completion_tokens' instead"), and so is any ``temperature`` but 1
  (``reasoning_rules=False`` turns this off; ``reasoning_models`` replaces the prefixes, e.g. for a deployment alias);
* ``response_format``: ``response_formats`` lists the types the server accepts (default ``("text", "json_object",
  "json_schema")``, like OpenAI and vLLM); a ``json_schema`` format must have a ``name`` and a ``schema``, and with
  ``strict: true`` every object must set ``additionalProperties: false`` and require all its properties (OpenAI's
  Structured Outputs rules). ``response_formats=()`` refuses any ``response_format``, as servers without
  structured output do; ``response_formats=None`` accepts anything (a server that ignores the field).

Every chat request is recorded: :attr:`FakeOpenAI.requests` (parsed JSON bodies), :attr:`FakeOpenAI.headers`
(case-insensitive header dicts), and :attr:`FakeOpenAI.calls` (both, with timing and the behaviour used).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from aiohttp import web
from multidict import CIMultiDict

__all__ = [
    "Behaviour",
    "EchoMessages",
    "Empty",
    "FakeOpenAI",
    "Hang",
    "LLMCall",
    "Malformed",
    "Reply",
    "Status",
    "StreamThenDrop",
    "echo_messages",
    "empty",
    "hang",
    "json_reply",
    "malformed",
    "reply",
    "split_text",
    "status",
    "stream_then_drop",
    "REASONING_MODEL_PREFIXES",
]

# Model names OpenAI treats as reasoning models (as far as these request rules go).
REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def split_text(text: str, chunks: int = 6) -> list[str]:
    """Split ``text`` into at most ``chunks`` non-empty pieces of near-equal length ("".join gives ``text``)."""
    if not text:
        return []
    n = max(1, min(chunks, len(text)))
    size, extra = divmod(len(text), n)
    out, pos = [], 0
    for i in range(n):
        step = size + (1 if i < extra else 0)
        out.append(text[pos : pos + step])
        pos += step
    return out


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 2) if text else 0


class _Ctx:
    """What a behaviour needs to answer one request."""

    def __init__(self, server: FakeOpenAI, request: web.Request, body: dict[str, Any]) -> None:
        self.server = server
        self.request = request
        self.body = body
        self.stream = bool(body.get("stream"))
        self.model = str(body.get("model") or server.model)
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        opts = body.get("stream_options") or {}
        self.include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))

    def prompt_tokens(self) -> int:
        return _approx_tokens(json.dumps(self.body.get("messages", []), ensure_ascii=False))

    def completion(self, content: str | None, finish_reason: str = "stop") -> dict[str, Any]:
        completion_tokens = _approx_tokens(content or "")
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": self.prompt_tokens(),
                "completion_tokens": completion_tokens,
                "total_tokens": self.prompt_tokens() + completion_tokens,
            },
        }

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        c: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            c["usage"] = None
        return c

    async def start_stream(self) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        )
        await resp.prepare(self.request)
        return resp

    @staticmethod
    async def send_event(resp: web.StreamResponse, data: dict[str, Any] | str) -> None:
        payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        await resp.write(f"data: {payload}\n\n".encode())

    async def stream_text(
        self, pieces: list[str], *, finish_reason: str = "stop", delay: float = 0.0, content_total: str = ""
    ) -> web.StreamResponse:
        resp = await self.start_stream()
        await self.send_event(resp, self.chunk({"role": "assistant", "content": "", "refusal": None}))
        for piece in pieces:
            if delay:
                await self.server._sleep(delay)
            await self.send_event(resp, self.chunk({"content": piece}))
        await self.send_event(resp, self.chunk({}, finish_reason))
        if self.include_usage:
            completion_tokens = _approx_tokens(content_total)
            await self.send_event(
                resp,
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "system_fingerprint": "fp_fake",
                    "choices": [],
                    "usage": {
                        "prompt_tokens": self.prompt_tokens(),
                        "completion_tokens": completion_tokens,
                        "total_tokens": self.prompt_tokens() + completion_tokens,
                    },
                },
            )
        await self.send_event(resp, "[DONE]")
        await resp.write_eof()
        return resp


class Behaviour:
    """How the fake answers one request. Subclass and implement :meth:`respond` for anything not built in."""

    async def respond(self, ctx: _Ctx) -> web.StreamResponse:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Reply(Behaviour):
    text: str
    chunks: int = 6  # number of SSE content chunks when streaming
    finish_reason: str = "stop"
    chunk_delay: float = 0.0  # seconds between SSE chunks

    async def respond(self, ctx: _Ctx) -> web.StreamResponse:
        if ctx.stream:
            return await ctx.stream_text(
                split_text(self.text, self.chunks),
                finish_reason=self.finish_reason,
                delay=self.chunk_delay,
                content_total=self.text,
            )
        return web.json_response(ctx.completion(self.text, self.finish_reason))


@dataclass
class Status(Behaviour):
    code: int
    body: Any = None  # dict -> JSON; str -> sent as-is (text/plain); None -> OpenAI's error shape
    retry_after: float | None = None

    async def respond(self, ctx: _Ctx) -> web.StreamResponse:
        headers = {}
        if self.retry_after is not None:
            ra = self.retry_after
            headers["Retry-After"] = str(int(ra) if float(ra).is_integer() else ra)
        if isinstance(self.body, str):
            return web.Response(status=self.code, text=self.body, headers=headers)
        body = self.body if self.body is not None else _error_body(self.code)
        return web.json_response(body, status=self.code, headers=headers)


@dataclass
class Hang(Behaviour):
    seconds: float
    then: Behaviour | None = None  # answer after the wait; default: a short reply

    async def respond(self, ctx: _Ctx) -> web.StreamResponse:
        await ctx.server._sleep(self.seconds)
        if ctx.server.closing:  # shut down mid-wait: the connection just goes away, as with a dying server
            _drop_connection(ctx.request)
        return await (self.then or Reply("（迟到的回答）")).respond(ctx)


@dataclass
class Malformed(Behaviour):
    kind: str = "json"  # "json": truncated JSON / non-JSON SSE event; "html": a 200 text/html page

    async def respond(self, ctx: _Ctx) -> web.StreamResponse:
        if self.kind == "html":
            return web.Response(
                status=200, text="<html><body><h1>Welcome to nginx!</h1></body></html>", content_type="text/html"
            )
        if ctx.stream:
            resp = await ctx.start_stream()
            await ctx.send_event(resp, "{this is not json")
            await ctx.send_event(resp, "[DONE]")
            await resp.write_eof()
            return resp
        return web.Response(
            status=200,
            text='{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [',
            content_type="application/json",
        )


@dataclass
class Empty(Behaviour):
    async def respond(self, ctx: _Ctx) -> web.StreamResponse:
        if ctx.stream:
            return await ctx.stream_text([])
        return web.json_response(ctx.completion(""))


@dataclass
class StreamThenDrop(Behaviour):
    text: str
    after_chunks: int = 2
    chunks: int = 6

    async def respond(self, ctx: _Ctx) -> web.StreamResponse:
        if ctx.stream:
            resp = await ctx.start_stream()
            await ctx.send_event(resp, ctx.chunk({"role": "assistant", "content": ""}))
            for piece in split_text(self.text, self.chunks)[: self.after_chunks]:
                await ctx.send_event(resp, ctx.chunk({"content": piece}))
        else:
            # Promise the whole body, deliver half of it.
            data = json.dumps(ctx.completion(self.text), ensure_ascii=False).encode()
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            resp.content_length = len(data)
            await resp.prepare(ctx.request)
            await resp.write(data[: len(data) // 2])
        await asyncio.sleep(0.01)  # let the bytes leave before the connection goes
        _drop_connection(ctx.request)


def _drop_connection(request: web.Request) -> NoReturn:
    """Close the TCP connection without finishing the response."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # stop aiohttp from writing to the dead connection (it logs nothing for this)


@dataclass
class EchoMessages(Behaviour):
    async def respond(self, ctx: _Ctx) -> web.StreamResponse:
        return await Reply(json.dumps(ctx.body.get("messages", []), ensure_ascii=False)).respond(ctx)


def reply(text: str, *, chunks: int = 6, finish_reason: str = "stop", chunk_delay: float = 0.0) -> Reply:
    """Answer with ``text`` (JSON completion, or ``chunks`` SSE deltas when the request streams)."""
    return Reply(text, chunks=chunks, finish_reason=finish_reason, chunk_delay=chunk_delay)


def json_reply(obj: Any, **kwargs: Any) -> Reply:
    """Answer with ``json.dumps(obj)`` (what a server constrained by a JSON Schema sends)."""
    return Reply(json.dumps(obj, ensure_ascii=False), **kwargs)


def status(code: int, body: Any = None, retry_after: float | None = None) -> Status:
    """Answer with HTTP ``code``; ``body`` defaults to OpenAI's ``{"error": {...}}``; ``retry_after`` -> header."""
    return Status(code, body, retry_after)


def hang(seconds: float, then: Behaviour | None = None) -> Hang:
    """Wait ``seconds`` (cancellable: shutdown or client disconnect ends it), then answer with ``then``."""
    return Hang(seconds, then)


def malformed(kind: str = "json") -> Malformed:
    """200 with a body that is not valid JSON (or, streaming, an SSE event that is not JSON).

    With openai 3.51 both surface as ``json.JSONDecodeError`` (a ``ValueError``, *not* an ``openai.APIError``).
    ``kind="html"`` answers 200 ``text/html`` instead: ``create()`` then *returns a str* rather than raising.
    """
    return Malformed(kind)


def empty() -> Empty:
    """200 with an empty assistant message."""
    return Empty()


def stream_then_drop(text: str, after_chunks: int = 2, *, chunks: int = 6) -> StreamThenDrop:
    """Start answering ``text``, send ``after_chunks`` of its ``chunks`` pieces, then cut the connection."""
    return StreamThenDrop(text, after_chunks, chunks)


def echo_messages() -> EchoMessages:
    """Reply with the JSON dump of the request's ``messages`` (to assert on the prompt from the client side)."""
    return EchoMessages()


def _invalid(message: str, param: str, code: str = "invalid_request_error") -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}, status=400
    )


def _strict_schema_problem(schema: Any, path: str = "schema") -> str | None:
    """Why a schema breaks OpenAI's strict Structured Outputs rules (None when it does not)."""
    if not isinstance(schema, dict):
        return f"{path}: not an object"
    if schema.get("type") == "object":
        props = schema.get("properties")
        if not isinstance(props, dict):
            return f"{path}: 'properties' is required"
        if schema.get("additionalProperties") is not False:
            return f"{path}: 'additionalProperties' is required to be supplied and to be false"
        if sorted(schema.get("required") or []) != sorted(props):
            return f"{path}: 'required' is required to be supplied and to be an array including every key in properties"
        for key, sub in props.items():
            problem = _strict_schema_problem(sub, f"{path}.properties.{key}")
            if problem:
                return problem
    if schema.get("type") == "array" and "items" in schema:
        return _strict_schema_problem(schema["items"], f"{path}.items")
    return None


def _error_body(code: int, message: str | None = None) -> dict[str, Any]:
    kinds = {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        404: ("invalid_request_error", "model_not_found"),
        429: ("rate_limit_exceeded", "rate_limit_exceeded"),
        500: ("server_error", None),
        503: ("server_error", "overloaded"),
    }
    kind, code_name = kinds.get(code, ("server_error" if code >= 500 else "invalid_request_error", None))
    defaults = {
        401: "Incorrect API key provided.",
        429: "Rate limit reached. Please try again later.",
        500: "The server had an error while processing your request.",
        503: "The engine is currently overloaded.",
    }
    return {
        "error": {
            "message": message or defaults.get(code, f"fake error {code}"),
            "type": kind,
            "param": None,
            "code": code_name,
        }
    }


@dataclass
class LLMCall:
    """One chat request: parsed body, headers, arrival time, and the behaviour that answered it."""

    body: dict[str, Any]
    headers: CIMultiDict[str]
    ts: float
    behaviour: Behaviour | None = None
    path: str = "/v1/chat/completions"
    finished_at: float | None = field(default=None, repr=False)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))


class FakeOpenAI:
    """Loopback OpenAI-compatible server (see the module docstring).

    :param default: behaviour when the script is empty (default ``reply("这是测试模型的回答。")``)
    :param model: model id listed by ``/v1/models`` and used when a request names none
    :param api_key: if set, requests without ``Authorization: Bearer <api_key>`` get 401 (AuthenticationError)
    """

    def __init__(
        self,
        *,
        default: Behaviour | None = None,
        model: str = "fake-model",
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        reasoning_rules: bool = True,
        reasoning_models: tuple[str, ...] = REASONING_MODEL_PREFIXES,
        response_formats: tuple[str, ...] | None = ("text", "json_object", "json_schema"),
    ) -> None:
        self.reasoning_rules = reasoning_rules
        self.reasoning_models = tuple(m.lower() for m in reasoning_models)
        self.response_formats = response_formats
        self.default: Behaviour = default or reply("这是测试模型的回答。")
        self.model = model
        self.api_key = api_key
        self.host = host
        self.port = port
        self.calls: list[LLMCall] = []
        self._queue: list[Behaviour] = []
        self._closing: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._waiters: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> FakeOpenAI:
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - the port chosen for port=0
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop; hanging requests are released at once."""
        if self._closing is not None:
            self._closing.set()
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_result(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def closing(self) -> bool:
        return self._closing is not None and self._closing.is_set()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``; the OpenAI client wants ``base_url + "/v1"``."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ scripting
    def script(self, *behaviours: Behaviour) -> FakeOpenAI:
        """Queue behaviours; each chat request consumes one, in order."""
        self._queue.extend(behaviours)
        return self

    @property
    def pending(self) -> int:
        """Scripted behaviours not yet consumed."""
        return len(self._queue)

    # ------------------------------------------------------------------ inspection
    @property
    def requests(self) -> list[dict[str, Any]]:
        """Parsed JSON bodies of the chat requests, in arrival order."""
        return [c.body for c in self.calls]

    @property
    def headers(self) -> list[CIMultiDict[str]]:
        """Headers of the chat requests (case-insensitive lookup), in arrival order."""
        return [c.headers for c in self.calls]

    def prompt_text(self, index: int = -1) -> str:
        """All message contents of request ``index`` joined by newlines (text parts of multi-part contents too)."""
        parts = []
        for m in self.calls[index].messages:
            content = m.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
        return "\n".join(parts)

    async def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> list[LLMCall]:
        """Wait until ``count`` chat requests have arrived; returns :attr:`calls`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.calls) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.calls)} of {count} LLM requests after {timeout}s")
            fut = loop.create_future()
            self._waiters.add(fut)
            try:
                await asyncio.wait_for(asyncio.shield(fut), remaining)
            except TimeoutError:
                pass
            finally:
                self._waiters.discard(fut)
        return self.calls

    # ------------------------------------------------------------------ HTTP
    async def _sleep(self, seconds: float) -> None:
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _auth_ok(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        call = LLMCall(
            body=body if isinstance(body, dict) else {"_raw": raw.decode("utf-8", "replace")},
            headers=CIMultiDict(request.headers),
            ts=time.monotonic(),
        )
        self.calls.append(call)
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_result(None)
        if not self._auth_ok(request):
            return web.json_response(_error_body(401), status=401)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return web.json_response(_error_body(400, "'messages' is a required property"), status=400)
        refused = self._check_params(body)
        if refused is not None:
            return refused
        behaviour = self._queue.pop(0) if self._queue else self.default
        call.behaviour = behaviour
        try:
            return await behaviour.respond(_Ctx(self, request, body))
        finally:
            call.finished_at = time.monotonic()

    def _check_params(self, body: dict[str, Any]) -> web.Response | None:
        model = str(body.get("model") or "")
        if self.reasoning_rules and model.lower().startswith(self.reasoning_models):
            if "max_tokens" in body:
                return _invalid(
                    "Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.",
                    "max_tokens",
                    "unsupported_parameter",
                )
            if "temperature" in body and body["temperature"] != 1:
                return _invalid(
                    f"Unsupported value: 'temperature' does not support {body['temperature']} with this "
                    "model. Only the default (1) value is supported.",
                    "temperature",
                    "unsupported_value",
                )
        fmt = body.get("response_format")
        if fmt is None or self.response_formats is None:
            return None
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in self.response_formats:
            return _invalid(f"response_format of type {kind!r} is not supported by this server", "response_format")
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
                return _invalid("Missing required parameter: 'response_format.json_schema.name'.", "response_format")
            if not isinstance(spec.get("schema"), dict):
                return _invalid("Missing required parameter: 'response_format.json_schema.schema'.", "response_format")
            if spec.get("strict"):
                problem = _strict_schema_problem(spec["schema"])
                if problem:
                    return _invalid(
                        f"Invalid schema for response_format '{spec['name']}': {problem}.", "response_format"
                    )
        return None

    async def _models(self, request: web.Request) -> web.Response:
        if not self._auth_ok(request):
            return web.json_response(_error_body(401), status=401)
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": self.model, "object": "model", "created": 1700000000, "owned_by": "faqbot-tests"}],
            }
        )

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.json_response(_error_body(404, f"Unknown request URL: {request.method} {request.path}"), status=404)
