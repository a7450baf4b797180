"""Streaming chat completions against any OpenAI-compatible server, with our own retries, budget and breaker.

`openai.AsyncOpenAI(max_retries=0)`: the client's own retries know nothing of our total time budget, so retries are
done here. Retried (exponential backoff with jitter, Retry-After honoured but capped): 429, 5xx, connection errors
and per-request timeouts — only before the first piece of text has arrived; a stream that breaks later is a failure
(its beginning may already be on the user's screen as a preview). Not retried: other 4xx, malformed bodies.

Every failure surfaces as `LLMError(kind, detail)`; kinds: timeout, connection, rate-limit, server-error,
http-error, malformed, empty, budget.

Request parameters follow the model (`request_params`): OpenAI reasoning models (o1, o3, o4-mini, gpt-5, ...) reject
`max_tokens` and any temperature but the default, so they get `max_completion_tokens` and no temperature. A server
that still answers 400 naming `max_tokens`, `temperature` or `response_format` gets the request again without the
parameter it refused (once; the client remembers it for the rest of the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bot.llm.settings import LLMSettings

log = logging.getLogger("faqbot.llm")

RETRYABLE = frozenset({"timeout", "connection", "rate-limit", "server-error"})


# OpenAI's reasoning models: "o1", "o1-mini", "o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5.1"...
# (optionally with a provider prefix such as "openai/"). "gpt-5-chat-latest" is not a reasoning model.
_REASONING_MODEL_RE = re.compile(r"^(?:[\w.-]+/)?(?:o[1-9](?![0-9])|gpt-5(?!.*-chat))", re.I)


def is_reasoning_model(model: str) -> bool:
    return bool(_REASONING_MODEL_RE.match(model or ""))


def request_params(settings: LLMSettings, *, max_tokens: int | None = None) -> dict[str, Any]:
    """The token limit and sampling parameters the configured model accepts."""
    reasoning = is_reasoning_model(settings.openai_model)
    param = settings.llm_token_param
    if param == "auto":
        param = "max_completion_tokens" if reasoning else "max_tokens"
    limit = max_tokens or settings.llm_max_tokens
    if reasoning:  # hidden reasoning tokens count against the limit too
        limit = max(limit, settings.llm_reasoning_max_tokens)
    out: dict[str, Any] = {param: limit}
    if not reasoning:
        out["temperature"] = settings.llm_temperature
    return out


@dataclass
class Completion:
    """A whole (non-streamed) answer."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class LLMError(Exception):
    def __init__(self, kind: str, detail: str = ""):
        self.kind = kind
        self.detail = detail
        self.refused_param: str | None = None  # a 400 that names a request parameter the server does not accept
        super().__init__(f"{kind}: {detail}" if detail else kind)


class CircuitBreaker:
    """Closed -> open after `failures` consecutive failed calls -> half-open after `cooldown` s (one trial call)
    -> closed on success, open again on failure."""

    def __init__(self, failures: int, cooldown: float, clock=time.monotonic):
        self.threshold = max(1, int(failures))
        self.cooldown = float(cooldown)
        self.clock = clock
        self.consecutive = 0
        self.opened_at: float | None = None
        self._trial = False  # a half-open trial call is running

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self._trial = False

    def failure(self) -> None:
        self.consecutive += 1
        if self._trial or self.consecutive >= self.threshold:
            if self.opened_at is None or self._trial:
                log.warning(
                    "LLM circuit breaker open for %.0f s after %d consecutive failures", self.cooldown, self.consecutive
                )
            self.opened_at = self.clock()
        self._trial = False

    def release(self) -> None:
        """A call that ended neither in success nor failure (cancelled): let the next one try."""
        self._trial = False


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None  # an HTTP date: use our own backoff
    return None


def classify(exc: BaseException) -> LLMError:
    """Map whatever the openai client raised to an LLMError."""
    import openai

    if isinstance(exc, LLMError):
        return exc
    detail = f"{type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, openai.APITimeoutError):
        return LLMError("timeout", detail)
    if isinstance(exc, openai.APIConnectionError):
        return LLMError("connection", detail)
    if isinstance(exc, openai.RateLimitError):
        err = LLMError("rate-limit", detail)
        err.retry_after = _retry_after(exc)  # type: ignore[attr-defined]
        return err
    if isinstance(exc, openai.APIStatusError):
        kind = "server-error" if exc.status_code >= 500 else "http-error"
        err = LLMError(kind, detail)
        err.retry_after = _retry_after(exc)  # type: ignore[attr-defined]
        if exc.status_code in (400, 422):
            err.refused_param = refused_param(exc)
        return err
    if isinstance(exc, (ValueError, openai.APIResponseValidationError, TypeError, AttributeError)):
        # openai 3.51 lets json.JSONDecodeError escape on a malformed body or SSE event.
        return LLMError("malformed", detail)
    if isinstance(exc, TimeoutError):
        return LLMError("timeout", detail)
    return LLMError("error", detail)


_PARAM_NAMES = ("max_tokens", "temperature", "response_format")


def refused_param(exc: Any) -> str | None:
    """The request parameter a 400/422 answer complains about, if it names one we may drop or swap.

    OpenAI says e.g. "Unsupported parameter: 'max_tokens' is not supported with this model. Use
    'max_completion_tokens' instead." (param "max_tokens"), or "Unsupported value: 'temperature' does not support
    0.1 with this model." Other servers answer in their own words but usually name the field.
    """
    body = getattr(exc, "body", None)
    param = body.get("param") if isinstance(body, dict) else None
    if isinstance(param, str) and param in _PARAM_NAMES:
        return param
    message = str(getattr(exc, "message", "") or exc)
    for name in _PARAM_NAMES:
        if re.search(rf"(?<![a-z_]){name}(?![a-z_])", message):
            return name
    if "json_schema" in message:
        return "response_format"
    return None


class ChatClient:
    backoff_base = 0.5  # seconds; doubled per retry
    backoff_cap = 4.0
    retry_after_cap = 5.0

    def __init__(self, settings: LLMSettings):
        self.settings = settings
        self._client = None
        self.last_model: str | None = None
        self.requests = 0  # HTTP requests started (for diagnostics)
        # Parameters this server refused once (see refused_param); not sent again by this process.
        self.dropped: set[str] = set()
        self.last_usage: tuple[int | None, int | None] = (None, None)
        # Import the client library now, when the bot starts, not on the first question: importing it takes about
        # a second, and on the event loop that second stalls every chat, not only the asker's answer.
        import openai  # noqa: F401
        import openai._streaming  # noqa: F401
        import openai.resources.chat.completions  # noqa: F401 - the client loads it on first use

    @property
    def client(self):
        if self._client is None:
            import openai

            key = self.settings.openai_api_key.get_secret_value() if self.settings.openai_api_key else ""
            self._client = openai.AsyncOpenAI(
                base_url=self.settings.openai_base_url or None,
                api_key=key or "not-needed",
                timeout=self.settings.llm_timeout,
                max_retries=0,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def backoff(self, attempt: int, err: LLMError) -> float:
        hinted = getattr(err, "retry_after", None)
        if hinted is not None:
            return min(float(hinted), self.retry_after_cap)
        base = min(self.backoff_base * (2**attempt), self.backoff_cap)
        return base * (1 + random.random() * 0.25)

    def params(self, *, max_tokens: int | None = None, response_format: dict | None = None) -> dict[str, Any]:
        """Keyword arguments for `chat.completions.create` besides model, messages and stream."""
        out = request_params(self.settings, max_tokens=max_tokens)
        if "max_tokens" in self.dropped and "max_tokens" in out:
            out["max_completion_tokens"] = out.pop("max_tokens")
        if "temperature" in self.dropped:
            out.pop("temperature", None)
        if response_format is not None and "response_format" not in self.dropped:
            out["response_format"] = response_format
        return out

    def _adapt(self, err: LLMError, sent: dict[str, Any]) -> bool:
        """After a 400 naming a parameter we sent: stop sending it (or swap it). True when the request may be
        repeated at once without it."""
        name = err.refused_param
        if err.kind != "http-error" or name is None or name in self.dropped or name not in sent:
            return False
        self.dropped.add(name)
        log.warning("LLM server refused the parameter %r; sending the requests without it from now on", name)
        return True

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        deadline: float,
        max_tokens: int | None = None,
        response_format: dict | None = None,
    ) -> Completion:
        """One whole answer (not streamed), with the same retries, budget and parameter adaptation as `stream`."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            kwargs = self.params(max_tokens=max_tokens, response_format=response_format)
            try:
                return await self._one_completion(messages, deadline, kwargs)
            except LLMError as err:
                if self._adapt(err, kwargs):
                    continue
                if err.kind not in RETRYABLE or attempt >= self.settings.llm_max_retries:
                    raise
                wait = self.backoff(attempt, err)
                if wait >= deadline - loop.time() - 0.05:
                    raise LLMError("budget", f"no time left to retry after {err}") from err
                log.info("LLM request failed (%s); retry %d in %.2f s", err, attempt + 1, wait)
                attempt += 1
                await asyncio.sleep(wait)

    async def _one_completion(
        self, messages: list[dict[str, str]], deadline: float, kwargs: dict[str, Any]
    ) -> Completion:
        s = self.settings
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise LLMError("budget", "time budget used up")
        self.requests += 1
        try:
            async with asyncio.timeout_at(deadline):
                out = await self.client.chat.completions.create(
                    model=s.openai_model,
                    messages=messages,
                    stream=False,
                    timeout=min(s.llm_timeout, remaining),
                    **kwargs,
                )
        except TimeoutError as exc:
            raise LLMError("timeout", "time budget used up waiting for the response") from exc
        except Exception as exc:
            raise classify(exc) from exc
        choices = getattr(out, "choices", None)
        if not isinstance(choices, list):
            raise LLMError("malformed", f"not a chat completion: {type(out).__name__}")
        model = getattr(out, "model", None)
        if isinstance(model, str) and model:
            self.last_model = model
        usage = getattr(out, "usage", None)
        self.last_usage = (getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))
        if not choices:
            raise LLMError("empty", "the response held no choices")
        message = getattr(choices[0], "message", None)
        text = getattr(message, "content", None)
        finish = getattr(choices[0], "finish_reason", None)
        if not isinstance(text, str) or not text.strip():
            detail = "the model returned no text" + (f" (finish_reason={finish})" if finish else "")
            raise LLMError("empty", detail)
        return Completion(text, finish, *self.last_usage)

    async def stream(self, messages: list[dict[str, str]], *, deadline: float) -> AsyncIterator[str]:
        """Yield the answer's text pieces. `deadline` is on the event loop clock (loop.time())."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            started_text = False
            kwargs = self.params()
            try:
                async with contextlib.aclosing(self._one_attempt(messages, deadline, kwargs)) as pieces:
                    async for piece in pieces:
                        started_text = True
                        yield piece
                return
            except LLMError as err:
                if not started_text and self._adapt(err, kwargs):
                    continue
                if started_text or err.kind not in RETRYABLE or attempt >= self.settings.llm_max_retries:
                    raise
                wait = self.backoff(attempt, err)
                remaining = deadline - loop.time()
                if wait >= remaining - 0.05:
                    raise LLMError("budget", f"no time left to retry after {err}") from err
                log.info("LLM request failed (%s); retry %d in %.2f s", err, attempt + 1, wait)
                attempt += 1
                await asyncio.sleep(wait)

    async def _one_attempt(
        self, messages: list[dict[str, str]], deadline: float, kwargs: dict[str, Any]
    ) -> AsyncIterator[str]:
        s = self.settings
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise LLMError("budget", "time budget used up")
        self.requests += 1
        stream = None
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    stream = await self.client.chat.completions.create(
                        model=s.openai_model,
                        messages=messages,
                        stream=True,
                        timeout=min(s.llm_timeout, remaining),
                        **kwargs,
                    )
            except TimeoutError as exc:
                raise LLMError("timeout", "time budget used up waiting for the response") from exc
            except Exception as exc:
                raise classify(exc) from exc
            if isinstance(stream, (str, bytes)) or not hasattr(stream, "__aiter__"):
                raise LLMError("malformed", f"not a stream: {type(stream).__name__}")
            it = stream.__aiter__()
            events = 0
            pieces = 0
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await it.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    raise LLMError("budget" if pieces else "timeout", "time budget used up while streaming") from exc
                except Exception as exc:
                    raise classify(exc) from exc
                events += 1
                model = getattr(chunk, "model", None)
                if isinstance(model, str) and model:
                    self.last_model = model
                choices = getattr(chunk, "choices", None)
                if not isinstance(choices, list) or not choices:
                    continue
                delta = getattr(choices[0], "delta", None)
                text = getattr(delta, "content", None)
                if isinstance(text, str) and text:
                    pieces += 1
                    yield text
            if not events:
                raise LLMError("malformed", "the response held no stream events (not an OpenAI-compatible server?)")
            if not pieces:
                raise LLMError("empty", "the model returned no text")
        finally:
            if stream is not None and hasattr(stream, "close"):
                try:
                    await stream.close()
                except Exception:  # closing a broken connection may fail too; nothing to do
                    pass
