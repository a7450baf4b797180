"""The grounded LLM fallback: retrieve entries, ask the model, check the answer, and never raise.

Two modes (`FAQBOT_LLM_MODE`):
  * quote (default): the model only selects entries and sentences (`bot.llm.quote`); the reply is the curated text,
    verbatim, under a fixed lead-in. One model call (two when the first output cannot be parsed). No drafts.
  * generate: the model writes the answer; it streams as unverified `Draft`s and is shown only if the guard
    (`bot.llm.guard`) passes it, and, with `FAQBOT_LLM_VERIFY`, a second short call finds no unsupported claim.

`LLMFallback.stream(base, conv)` yields drafts (generate mode) and then exactly one final `Reply` with route `llm`:
the answer, the configured refusal, or the safe fallback (related questions and the service-point referral).
Every failure ends in the safe fallback with `error` set; guard failures carry `guard="fail: <reason>"`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.answering import texts
from bot.answering.privacy import mask_pii
from bot.answering.types import Candidate, Conversation, Draft, Reason, Reply, Route
from bot.llm import guard, quote
from bot.llm.client import ChatClient, CircuitBreaker, LLMError
from bot.llm.settings import FallbackSettings
from knowledge.loader import Entry, KnowledgeBase
from knowledge.match import matcher_for
from knowledge.normalize import to_traditional
from knowledge.retrieve import retriever_for
from prompts.loader import Prompts, load_prompts, render

log = logging.getLogger("faqbot.llm")

HISTORY_ANSWER_CHARS = 300  # earlier answers are cut to this length in the prompt
VERIFY_MAX_TOKENS = 200  # the verifier lists claims; it needs no more (reasoning models get their own limit)
# Entries whose rules are specific to Hebei (channels, provincial platform): the answer gets the province note.
PROVINCE_RE = re.compile(r"河北|衡水|省")
# A short question, or one that opens/ends like a follow-up, is read together with the previous question.
FOLLOW_UP_CHARS = 10
_FOLLOW_UP_RE = re.compile(
    r"^(?:那|那么|那如果|还有|另外|如果|要是|它|这个|那个|这样|然后|再)|(?:呢|吗|么)[?？。！!]*$"
)


def new_canary() -> str:
    """A random token for the system prompt; seeing it in an answer proves a prompt leak."""
    return "CNRY" + secrets.token_hex(6).upper()


def escape_data(text: str) -> str:
    """Neutralise the prompt delimiters in user-supplied text: it can neither open nor close a block."""
    return text.replace("<", "＜").replace(">", "＞")


def entry_block(e: Entry) -> str:
    return f"<<<FAQ id={e.id} section={e.section}>>>\n问：{escape_data(e.question)}\n答：{escape_data(e.answer)}\n<<<END>>>"


@dataclass
class Prepared:
    entries: list[Entry]
    messages: list[dict[str, str]]
    question: str  # what was sent in the question slot (masked, escaped)
    follow_up: bool


class DraftFilter:
    """Turns the growing raw output into preview texts; stops for good once a leak shows up.

    The preview lags `hold` characters behind the raw text, and the whole raw text is checked before any prefix
    of it is shown, so a canary or a prompt stretch is always complete (and detected) before its first character
    could be displayed.
    """

    def __init__(self, leak: guard.LeakDetector, hold: int):
        self.leak = leak
        self.hold = hold
        self.parts: list[str] = []
        self.stopped = False
        self.last = ""

    def feed(self, piece: str) -> str | None:
        self.parts.append(piece)
        if self.stopped:
            return None
        visible = guard.strip_reasoning("".join(self.parts))
        if self.leak.find(visible):
            self.stopped = True
            return None
        shown = guard.preview_text(visible[: max(0, len(visible) - self.hold)])
        if not shown or shown == self.last:
            return None
        self.last = shown
        return shown


class LLMFallback:
    def __init__(self, settings: FallbackSettings, kb: KnowledgeBase):
        self.settings = settings
        self.canary = new_canary()
        self.prompts: Prompts = load_prompts(settings.prompts_dir)
        self.kb = kb
        self.matcher = matcher_for(kb)
        self.retriever = retriever_for(kb)
        self.units = quote.index_units(kb.entries)
        self._build_leak()
        self.client = ChatClient(settings)
        self.breaker = CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_cooldown)
        self.guard_threshold = guard.DEFAULT_THRESHOLD

    # -- set-up and reload -------------------------------------------------------------------------
    @property
    def system_prompt(self) -> str:
        return self._system

    def _build_leak(self) -> None:
        self._system = render(self.prompts.system, canary=self.canary, refusal=self.prompts.refusal)
        allowed = [
            self.prompts.refusal,
            texts.REFERRAL,
            texts.SOURCE_NOTE,
            texts.LLM_FALLBACK,
            texts.WELCOME,
            texts.HELP,
            texts.OUT_OF_SCOPE,
        ]
        for e in self.kb.entries:
            allowed.extend((e.question, e.answer, *e.alternates))
        self.leak = guard.LeakDetector(self._system, self.canary, allowed)

    def reload(self, kb: KnowledgeBase | None = None) -> None:
        """New knowledge and prompts from disk. Each part that fails keeps what is running (and is logged)."""
        if kb is not None and kb is not self.kb:
            try:
                matcher = matcher_for(kb)
                retriever = retriever_for(kb)
            except Exception:
                log.exception("LLM fallback: could not index the new knowledge; keeping the running version")
            else:
                self.kb, self.matcher, self.retriever = kb, matcher, retriever
                self.units = quote.index_units(kb.entries)
        prompts = self.prompts
        try:
            prompts = load_prompts(self.settings.prompts_dir)
        except Exception:
            log.exception("LLM fallback: could not reload the prompts; keeping the running ones")
        old = (self.prompts, self._system, self.leak)
        try:
            self.prompts = prompts
            self._build_leak()
        except Exception:
            log.exception("LLM fallback: could not rebuild the prompt checks; keeping the running ones")
            self.prompts, self._system, self.leak = old

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- prompt assembly ---------------------------------------------------------------------------
    def is_follow_up(self, base: Reply) -> bool:
        q = base.question.strip()
        return len(base.normalized) <= FOLLOW_UP_CHARS or bool(_FOLLOW_UP_RE.search(q))

    def context_entries(self, base: Reply, conv: Conversation | None) -> tuple[list[Entry], bool]:
        k = self.settings.llm_top_k
        # The core already ranked the question with the same matcher: reuse its candidates (top 5) when it did.
        ids = [c.faq_id for c in base.candidates] if base.candidates else None
        current = self.retriever.retrieve(base.normalized, k, ids)
        history = list(conv.history) if conv is not None else []
        if not history or self.settings.llm_history_turns <= 0 or not self.is_follow_up(base):
            return current, False
        prev = history[-1]
        prev_norm = self.matcher.normalizer.normalize(
            mask_pii(prev.question).text, max_chars=self.settings.match_prefix_chars
        ).text
        combined = self.retriever.retrieve(prev_norm + base.normalized, k)
        seen: set[str] = set()
        merged: list[Entry] = []
        # The previous answer's entry first: "那支付宝呢？" continues it.
        prev_entry = self.kb.get(prev.faq_id) if prev.faq_id else None
        ordered = ([prev_entry] if prev_entry else []) + [
            x for pair in zip(combined, current, strict=False) for x in pair
        ]
        ordered += combined + current
        for e in ordered:
            if e.id not in seen:
                seen.add(e.id)
                merged.append(e)
        return merged[:k], True

    def _history_block(self, conv: Conversation | None) -> str:
        n = self.settings.llm_history_turns
        if conv is None or n <= 0 or not conv.history:
            return self.prompts.phrases["no_history"]
        lines = ["<<<HISTORY>>>"]
        for ex in list(conv.history)[-n:]:
            q = escape_data(mask_pii(ex.question).text[: self.settings.max_question_chars])
            a = mask_pii(ex.answer).text
            if len(a) > HISTORY_ANSWER_CHARS:
                a = a[:HISTORY_ANSWER_CHARS] + "…"
            lines.append(f"用户：{q}")
            lines.append(f"助手：{escape_data(a)}")
        lines.append("<<<END>>>")
        return "\n".join(lines)

    def prepare(self, base: Reply, conv: Conversation | None) -> Prepared:
        """Retrieval and prompt assembly (no I/O)."""
        entries, follow_up = self.context_entries(base, conv)
        question = escape_data(mask_pii(base.question or "").text[: self.settings.max_question_chars])
        p = self.prompts
        if self.settings.llm_mode == "quote":
            user = render(
                p.quote_user,
                entries="\n\n".join(quote.entry_block(self.units[e.id]) for e in entries),
                history=self._history_block(conv),
                question=question,
            )
            messages = [{"role": "system", "content": p.quote_system}, {"role": "user", "content": user}]
            return Prepared(entries, messages, question, follow_up)
        user = render(
            p.user,
            entries="\n\n".join(entry_block(e) for e in entries),
            history=self._history_block(conv),
            question=question,
            script=p.phrases["traditional" if base.traditional else "simplified"],
            refusal=p.refusal,
        )
        messages = [{"role": "system", "content": self._system}, {"role": "user", "content": user}]
        return Prepared(entries, messages, question, follow_up)

    # -- the answer ----------------------------------------------------------------------------------
    def _reply(self, base: Reply) -> Reply:
        return Reply(
            route=Route.LLM,
            text="",
            question=base.question,
            normalized=base.normalized,
            score=base.score,
            candidates=list(base.candidates),
            masked=dict(base.masked),
            traditional=base.traditional,
            knowledge_version=base.knowledge_version or self.kb.version,
            via=base.via,
            turn_id=base.turn_id,
            model=self.settings.openai_model,
        )

    def _notes(self, base: Reply) -> list[str]:
        notes = []
        if base.masked:
            notes.append(texts.PII_NOTE)
        if texts.TOO_LONG_NOTE in base.text or to_traditional(texts.TOO_LONG_NOTE) in base.text:
            notes.append(texts.TOO_LONG_NOTE)
        return notes

    def _finish(self, out: Reply, base: Reply, body: str, choices: list[Candidate]) -> Reply:
        parts = [body]
        if choices:
            parts.append(f"{texts.RELATED_HEAD}\n{texts.numbered(choices)}")
        parts.extend(self._notes(base))
        text = "\n\n".join(p for p in parts if p)
        out.text = to_traditional(text) if base.traditional else text
        out.choices = choices
        return out

    def _related(self, base: Reply) -> list[Candidate]:
        return list(base.choices[:3])

    def safe_fallback(self, out: Reply, base: Reply) -> Reply:
        return self._finish(out, base, texts.LLM_FALLBACK, self._related(base))

    async def stream(self, base: Reply, conv: Conversation) -> AsyncIterator[Draft | Reply]:
        out = self._reply(base)
        try:
            async for event in self._stream(base, conv, out):
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:  # a bug of ours must still end in the safe fallback
            log.exception("LLM fallback failed")
            out.error = f"{type(exc).__name__}: {exc}"[:300]
            out.reason = Reason.LLM_ERROR
            yield self.safe_fallback(out, base)

    async def _stream(self, base: Reply, conv: Conversation, out: Reply) -> AsyncIterator[Draft | Reply]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.llm_budget
        prep = self.prepare(base, conv)
        out.context_ids = [e.id for e in prep.entries]
        if not prep.entries:
            out.reason = Reason.LLM_NO_CONTEXT  # nothing in the FAQ shares a character pair with the question
            yield self.safe_fallback(out, base)
            return
        if not self.breaker.allow():
            out.reason, out.error = Reason.CIRCUIT_OPEN, "LLM skipped: circuit breaker open"
            yield self.safe_fallback(out, base)
            return
        if self.settings.llm_mode == "quote":
            yield await self._quote(base, prep, out, deadline)
            return

        drafts = DraftFilter(self.leak, hold=max(len(self.canary), guard.LEAK_CHARS))
        settled = False
        try:
            async with contextlib.aclosing(self.client.stream(prep.messages, deadline=deadline)) as pieces:
                async for piece in pieces:
                    shown = drafts.feed(piece)
                    if shown is not None:
                        yield Draft(shown)
            self.breaker.success()
            settled = True
        except LLMError as err:
            settled = True
            self._llm_failed(out, err)
            raw = "".join(drafts.parts)
            if raw:
                out.llm_raw = mask_pii(raw).text
            log.warning("LLM fallback: %s", err)
            yield self.safe_fallback(out, base)
            return
        finally:
            if not settled:
                self.breaker.release()

        raw = "".join(drafts.parts)
        out.model = self.client.last_model or out.model
        out.llm_raw = mask_pii(raw).text
        started = time.perf_counter()
        verdict = guard.check(
            raw,
            context={e.id: e for e in prep.entries},
            refusal=self.prompts.refusal,
            leak=self.leak,
            boilerplate=(texts.SOURCE_NOTE, texts.REFERRAL),
            threshold=self.guard_threshold,
        )
        guard_ms = (time.perf_counter() - started) * 1000
        out.guard = verdict.label
        if not verdict.ok:
            log.info("LLM answer rejected by the guard (%s, %.2f ms)", verdict.reason, guard_ms)
            out.reason = Reason.GUARD_FAIL
            yield self.safe_fallback(out, base)
            return
        if verdict.refusal:
            out.reason = Reason.LLM_REFUSAL
            body = f"{self.prompts.refusal}\n{texts.REFERRAL}"
            yield self._finish(out, base, body, self._related(base))
            return
        sent = {e.id: e for e in prep.entries}
        cited = [sent[c] for c in verdict.cited]
        if self.settings.llm_verify:
            problem = await self._verify(cited, verdict.text, deadline)
            if problem:
                out.guard, out.reason = f"fail: verifier:{problem}"[:300], Reason.GUARD_FAIL
                log.info("LLM answer withheld by the verifier (%s)", problem)
                yield self.safe_fallback(out, base)
                return
        body = verdict.text
        if any(PROVINCE_RE.search(e.answer) for e in cited):
            body = f"{body}\n{texts.SOURCE_NOTE}"
        out.reason = Reason.LLM_ANSWER
        yield self._finish(out, base, body, [])

    # -- quote mode ----------------------------------------------------------------------------------
    async def _select(self, prep: Prepared, allowed: list[str], deadline: float) -> tuple[quote.Selection, str]:
        """Ask for the selection; one more try when the output does not parse. Raises LLMError / SelectionError."""
        fmt = self.settings.llm_response_format
        response_format = None
        if fmt in ("auto", "json_schema"):
            response_format = quote.response_format(allowed)
        elif fmt == "json_object":
            response_format = {"type": "json_object"}
        messages = list(prep.messages)
        raws: list[str] = []
        for attempt in range(2):
            completion = await self.client.complete(messages, deadline=deadline, response_format=response_format)
            raws.append(completion.text)
            try:
                return quote.parse(completion.text, allowed), "\n---\n".join(raws)
            except quote.SelectionError as err:
                if err.kind != "unparseable" or attempt:
                    err.raw = "\n---\n".join(raws)  # type: ignore[attr-defined]
                    raise
                log.info("quote mode: unparseable selection (%s); asking once more", err.detail)
                retry = render(self.prompts.phrases["quote_retry"], error=err.detail[:120])
                messages += [
                    {"role": "assistant", "content": completion.text[:2000]},
                    {"role": "user", "content": retry},
                ]
        raise AssertionError("unreachable")

    def _llm_failed(self, out: Reply, err: LLMError) -> None:
        """The server failed (either mode): count it for the breaker and record it on the turn."""
        self.breaker.failure()
        out.model = self.client.last_model or out.model
        out.reason, out.error = f"{Reason.LLM_ERROR}:{err.kind}", str(err)[:300]

    async def _quote(self, base: Reply, prep: Prepared, out: Reply, deadline: float) -> Reply:
        context = {e.id: self.units[e.id] for e in prep.entries}
        allowed = quote.labels(context.values())
        settled = False
        try:
            selection, raw = await self._select(prep, allowed, deadline)
            self.breaker.success()
            settled = True
        except LLMError as err:
            settled = True
            self._llm_failed(out, err)
            log.warning("LLM fallback (quote): %s", err)
            return self.safe_fallback(out, base)
        except quote.SelectionError as err:
            self.breaker.success()  # the server answered; the model did not follow the format
            settled = True
            out.model = self.client.last_model or out.model
            out.llm_raw = mask_pii(getattr(err, "raw", "")).text or None
            out.guard, out.reason = f"fail: quote-{err.kind}: {err.detail}"[:300], f"quote-{err.kind}"
            log.info("quote mode: %s (%s)", err.kind, err.detail)
            return self.safe_fallback(out, base)
        finally:
            if not settled:
                self.breaker.release()
        out.model = self.client.last_model or out.model
        out.llm_raw = mask_pii(raw).text
        if not selection.answerable:
            out.guard, out.reason = "pass", Reason.LLM_REFUSAL
            return self._finish(out, base, f"{self.prompts.refusal}\n{texts.REFERRAL}", self._related(base))
        if not selection.quotes:
            out.guard, out.reason = f"fail: {Reason.QUOTE_EMPTY}", Reason.QUOTE_EMPTY
            return self.safe_fallback(out, base)
        chosen = quote.chosen_units(selection, context)
        body = quote.compose(chosen)
        if any(PROVINCE_RE.search(eu.entry.answer) for eu, _ in chosen):
            body = f"{body}\n{texts.SOURCE_NOTE}"
        out.guard, out.reason = "pass", Reason.LLM_QUOTE
        return self._finish(out, base, body, [])

    # -- the verifier pass (generate mode) -------------------------------------------------------------
    async def _verify(self, cited: list[Entry], answer: str, deadline: float) -> str:
        """ "" when a second model call finds every claim supported; else a short reason (fails closed)."""
        p = self.prompts
        user = render(
            p.verify_user, entries="\n\n".join(entry_block(e) for e in cited), answer=escape_data(mask_pii(answer).text)
        )
        messages = [{"role": "system", "content": p.verify_system}, {"role": "user", "content": user}]
        schema = {
            "type": "object",
            "properties": {"unsupported": {"type": "array", "items": {"type": "string"}}},
            "required": ["unsupported"],
            "additionalProperties": False,
        }
        fmt = None
        if self.settings.llm_response_format in ("auto", "json_schema"):
            fmt = {
                "type": "json_schema",
                "json_schema": {"name": "unsupported_claims", "strict": True, "schema": schema},
            }
        elif self.settings.llm_response_format == "json_object":
            fmt = {"type": "json_object"}
        try:
            completion = await self.client.complete(
                messages, deadline=deadline, response_format=fmt, max_tokens=VERIFY_MAX_TOKENS
            )
        except LLMError as err:
            return f"error:{err.kind}"
        return verifier_problem(completion.text)


def verifier_problem(raw: str) -> str:
    """ "" when the verifier's output is exactly {"unsupported": []}; else the first claim or why it is unusable."""
    text = guard.strip_reasoning(raw or "").strip()
    m = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.S)
    if m:
        text = m.group(1)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return "unparseable"
    if not isinstance(obj, dict) or not isinstance(obj.get("unsupported"), list):
        return "unparseable"
    claims = [c for c in obj["unsupported"] if isinstance(c, str) and c.strip()]
    if len(claims) != len(obj["unsupported"]):
        return "unparseable"
    return claims[0][:80] if claims else ""
