"""Channel-neutral data the answering core hands to every adapter and to the log."""

from __future__ import annotations

import enum
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


class Route(enum.StrEnum):
    """How a question was answered (stored as its value in ``turns.route``)."""

    FAQ = "faq"  # confident: the curated answer, verbatim
    CLARIFY = "clarify"  # close call: "did you mean" choices
    LLM = "llm"  # answered (or refused) by the grounded LLM fallback
    NONE = "none"  # outside the FAQ, empty input, or nothing usable


class FeedbackKind(enum.StrEnum):
    """What a user said about an answer (stored as its value in ``feedback.kind``; the log's schema accepts exactly
    these). The latest one of a turn counts; ``withdrawn`` (a removed 👍/👎 reaction) reads as no feedback."""

    UP = "up"  # 👍
    DOWN = "down"  # 👎
    NONE = "none"  # "none of these" (都不是) on a clarify offer
    WITHDRAWN = "withdrawn"


class Reason(enum.StrEnum):
    """Why a reply is what it is, as set by the answering core and the LLM fallback (stored in ``turns.reason``).

    The matcher's reasons (``knowledge.match.MatchReason``) pass through unchanged, and some are compound: the core
    appends ``;other:<id>``, ``;place``, ``;elsewhere``, ``;partial:<id>``; the fallback writes ``llm-error:<kind>``
    and ``quote-<kind>``. So ``Reply.reason`` is a ``str``; compare the plain ones with these members.
    """

    # the answering core
    EMPTY = "empty"  # nothing but punctuation / placeholders
    GREETING = "greeting"
    THANKS = "thanks"
    CHOSEN = "chosen"  # a clarify choice or topic button: the curated answer of that entry
    NONE_OF_THESE = "none-of-these"  # "none of these" picked on a clarify offer
    STALE_CHOICE = "stale-choice"  # a choice whose entry is gone after a reload
    ERROR = "error"  # answering raised; the user got texts.ERROR
    # the LLM fallback
    LLM_ANSWER = "llm-answer"  # generate mode, passed the guard
    LLM_QUOTE = "llm-quote"  # quote mode: curated sentences the model picked
    LLM_REFUSAL = "llm-refusal"  # the model said the FAQ does not answer it
    LLM_NO_CONTEXT = "llm-no-context"  # nothing in the FAQ shares a character pair with the question
    LLM_ERROR = "llm-error"  # the server failed (also ``llm-error:<kind>``)
    CIRCUIT_OPEN = "circuit-open"  # skipped: the circuit breaker is open
    GUARD_FAIL = "guard-fail"  # generate mode: the guard or the verifier withheld the answer
    QUOTE_EMPTY = "quote-empty"  # quote mode: the model picked nothing usable


# Replies to something that is no question: no feedback buttons, nothing to follow up, no LLM call.
NOT_A_QUESTION = frozenset(
    {Reason.EMPTY, Reason.GREETING, Reason.THANKS, Reason.NONE_OF_THESE, Reason.ERROR, Reason.STALE_CHOICE}
)


@dataclass(frozen=True)
class Candidate:
    faq_id: str
    section: int
    score: float  # 0-100
    question: str  # the canonical question of the entry
    title: str = ""  # short label for buttons

    def as_dict(self) -> dict[str, Any]:
        return {
            "faq_id": self.faq_id,
            "section": self.section,
            "score": round(self.score, 1),
            "question": self.question,
        }


_last_ms = 0
_last_tail = 0


def new_turn_id() -> str:
    """Time-ordered, unique id made in memory so adapters can reference a turn before it is on disk.

    12 hex digits of milliseconds + 8 hex digits = 20 characters (fits Telegram's 64-byte callback data).
    The tail is random; within one millisecond it moves up from the previous id by a random step, so ids made
    by one process sort in the order they were made even when the clock has not moved (log order = ask order,
    as with ULID's monotonic mode), and a neighbour's id still cannot be guessed from one's own (callback data
    such as 👍 carries the id; forging one for someone else's answer would take ~65,000 tries on average).
    """
    global _last_ms, _last_tail
    ms = int(time.time() * 1000)
    tail = _last_tail + 1 + secrets.randbits(17) if ms <= _last_ms else secrets.randbits(31)
    if ms <= _last_ms:
        ms = _last_ms  # same (or a stepped-back) clock: stay in the last millisecond...
        if tail > 0xFFFFFFFF:  # ...unless its ids are used up: then borrow the next one
            ms, tail = _last_ms + 1, secrets.randbits(31)
    _last_ms, _last_tail = ms, tail
    return f"{ms:012x}{tail:08x}"


@dataclass
class Reply:
    route: Route
    text: str  # exactly what the user is shown
    question: str = ""  # the question as received, personal data masked
    normalized: str = ""
    faq_id: str | None = None  # entry answered directly (route faq), else None
    section: int | None = None
    score: float = 0.0  # score of the top candidate, 0-100
    candidates: list[Candidate] = field(default_factory=list)  # ranked, best first, up to 5
    choices: list[Candidate] = field(default_factory=list)  # clarify choices / related questions to offer
    reason: str = ""  # short machine-readable why (e.g. "empty", "foreign-term:身份证", "low-score")
    # LLM fallback trace
    context_ids: list[str] = field(default_factory=list)
    model: str | None = None
    llm_raw: str | None = None  # raw model output, masked
    guard: str | None = None  # "pass" or "fail: <reason>"
    # bookkeeping
    turn_id: str = field(default_factory=new_turn_id)
    latency_ms: float = 0.0
    knowledge_version: str = ""
    error: str | None = None
    masked: dict[str, int] = field(default_factory=dict)  # e.g. {"id": 1, "phone": 0, "bank": 0}
    traditional: bool = False  # the question was in Traditional script; text is converted
    via: str = "text"  # "text", "button" (topic/choice tap), "command"

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "turn_id": self.turn_id,
            "question": self.question,
            "normalized": self.normalized,
            "route": self.route.value,
            "answer": self.text,
            "faq_id": self.faq_id,
            "section": self.section,
            "score": round(self.score, 1),
            "candidates": [c.as_dict() for c in self.candidates],
            "choices": [c.as_dict() for c in self.choices],
            "reason": self.reason,
            "latency_ms": round(self.latency_ms, 3),
            "knowledge_version": self.knowledge_version,
        }
        if self.route is Route.LLM or self.context_ids:
            d.update(context_ids=self.context_ids, guard=self.guard, model=self.model)
        if self.error:
            d["error"] = self.error
        return d


@dataclass(frozen=True)
class Exchange:
    """One past question/answer pair, kept for LLM follow-ups ("那支付宝呢？")."""

    question: str  # masked
    answer: str
    faq_id: str | None


@dataclass
class Conversation:
    """Where a question comes from. Adapters keep one per (channel, chat, user)."""

    channel: str  # "telegram", "matrix", "console", "cli"
    chat_id: str
    chat_type: str = "private"  # "private", "group", "supergroup", "console", "cli"
    user_id: str | None = None  # raw platform id; only its HMAC is ever stored
    history: deque[Exchange] = field(default_factory=lambda: deque(maxlen=6))
    pending_choices: list[Candidate] = field(default_factory=list)  # last clarify offer, for numbered answers

    def remember(self, reply: Reply) -> None:
        self.history.append(Exchange(reply.question, reply.text, reply.faq_id))
        self.pending_choices = list(reply.choices) if reply.route is Route.CLARIFY else []


@dataclass(frozen=True)
class Draft:
    """A partial, unverified LLM text for progressive display only; never final."""

    text: str
