"""The one answering core every channel uses: question + conversation -> Reply.

normalize -> match the curated FAQ -> faq (curated answer) / clarify (choices) / none, and, when an LLM is
configured, a grounded LLM answer for what matching could not answer confidently. Every finished exchange is
handed to the log (if any) without waiting for the disk.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Protocol

from bot.answering import texts
from bot.answering.settings import AnsweringSettings
from bot.answering.types import NOT_A_QUESTION, Candidate, Conversation, Draft, FeedbackKind, Reason, Reply, Route
from knowledge.loader import KnowledgeBase, load_knowledge
from knowledge.match import MatchReason, MatchResult, Thresholds, matcher_for
from knowledge.normalize import to_traditional
from storage.safe_text import clean_text

log = logging.getLogger("faqbot.core")

# A masked number and the words that introduce it ("我的身份证号是[身份证号]") are not what the question is about.
_PII_LABEL_RE = re.compile(
    r"(?:我的|我|本人)?(?:身份证号码?|身份证|社会保障号码|社保号|手机号码?|电话号码?|电话|手机|银行卡号|银行卡|卡号|账号)?"
    r"\s*(?:是|为|:|：)?\s*\[(?:身份证号|手机号|银行卡号)\]"
)


class TurnSink(Protocol):
    def record_turn(self, conv: Conversation, reply: Reply) -> None: ...
    def record_feedback(self, turn_id: str, kind: str) -> None: ...


class Fallback(Protocol):
    """The LLM fallback: turns a matcher reply it may improve into Drafts and exactly one final Reply."""

    def stream(self, base: Reply, conv: Conversation) -> AsyncIterator[Draft | Reply]: ...


class Answerer:
    def __init__(
        self,
        settings: AnsweringSettings,
        kb: KnowledgeBase | None = None,
        *,
        llm: Fallback | None = None,
        turn_sink: TurnSink | None = None,
    ):
        self.settings = settings
        self.kb = kb if kb is not None else load_knowledge(settings.knowledge_dir)
        self.matcher = matcher_for(self.kb)
        self.llm = llm
        self.turn_sink = turn_sink  # where finished turns and feedback go (the log writer), if anywhere

    # -- knowledge -----------------------------------------------------------------------------
    @property
    def thresholds(self) -> Thresholds:
        return self.settings.thresholds

    def reload(self, directory=None) -> KnowledgeBase:
        """Load and validate the knowledge again; on error raise and keep serving the running version."""
        kb = load_knowledge(directory or self.kb.directory or self.settings.knowledge_dir)
        matcher = matcher_for(kb)
        self.kb, self.matcher = kb, matcher  # swapped together, after validation succeeded
        reload_llm = getattr(self.llm, "reload", None)
        if reload_llm is not None:
            reload_llm(kb)
        return kb

    def candidate(self, faq_id: str, score: float = 100.0) -> Candidate | None:
        e = self.kb.get(faq_id)
        if e is None:
            return None
        return Candidate(e.id, e.section, score, e.question, e.title)

    # -- offline matching (no LLM, no log) ---------------------------------------------------
    def match(self, question: str, conv: Conversation | None = None) -> Reply:
        from bot.answering.privacy import mask_pii

        started = time.perf_counter()
        # Terminal escapes, control characters (NUL breaks search) and undecodable bytes never go further: not to
        # the matcher, the LLM, the log or a curator's terminal.
        raw = clean_text(question) if isinstance(question, str) else ""
        masked = mask_pii(raw[: self.settings.max_question_chars * 2])
        q_text = masked.text[: self.settings.max_question_chars]
        # Placeholders of masked numbers say nothing about the question ("身份证号" would even look off-topic).
        # Always: a question replayed from the log carries the placeholders already, masked or not this time.
        match_text = _PII_LABEL_RE.sub(" ", q_text)
        norm = self.matcher.normalizer.normalize(match_text, max_chars=self.settings.max_question_chars)
        key = norm.text[: self.settings.match_prefix_chars]
        reply = Reply(
            route=Route.NONE,
            text="",
            question=q_text,
            normalized=key,
            traditional=norm.traditional,
            masked={k: v for k, v in masked.counts.items() if v},
            knowledge_version=self.kb.version,
        )

        # A numbered answer to a clarify offer (console, Matrix): "2", "２", "2。", "2、".
        # isdecimal, not isdigit: int() rejects some "digits" (e.g. U+10A40) and would raise.
        pick = "".join(ch for ch in norm.cleaned if ch.isalnum())
        if conv is not None and conv.pending_choices and pick.isdecimal():
            picked = int(pick)
            if 0 <= picked <= len(conv.pending_choices):
                return self._finish_sync(self._chosen(conv, picked, reply), started)

        if not key:
            bare = "".join(ch for ch in norm.cleaned.lower() if ch.isalnum())
            if bare in texts.THANKS_WORDS or bare.startswith("谢谢"):
                reply.text, reply.reason = texts.THANKS, Reason.THANKS
            elif bare:
                reply.text, reply.reason = texts.GREETING, Reason.GREETING
            else:
                reply.text, reply.reason = texts.EMPTY, Reason.EMPTY
            return self._finish_sync(reply, started)

        asks = tuple((a[: self.settings.match_prefix_chars], w) for a, w in norm.asks)
        result = self.matcher.route(key, self.thresholds, asks)
        self._apply(result, reply)
        if reply.route is Route.FAQ and norm.matters and result.partial is None:
            # Two matters in one message ("……，另外……"): the clear one is answered, the other one named for the next turn.
            other = self.matcher.other_matter(norm.matters, result.ranked[0].entry, self.thresholds)
            if other is not None:
                reply.text = f"{reply.text}\n\n{texts.OTHER_MATTER_HEAD}\n{other.question}"
                reply.reason = f"{reply.reason};other:{other.id}"
        if reply.route is Route.FAQ and norm.elsewhere:
            # Answers come from Hebei's FAQ: say so when the asker is somewhere else.
            reply.text = f"{reply.text}\n\n{texts.place_note(norm.places)}"
            reply.reason = f"{reply.reason};place" if norm.places else f"{reply.reason};elsewhere"
        if len(raw) > self.settings.max_question_chars:
            reply.text = f"{reply.text}\n{texts.TOO_LONG_NOTE}"
        return self._finish_sync(reply, started)

    def _apply(self, result: MatchResult, reply: Reply) -> None:
        th = self.thresholds
        reply.candidates = [
            Candidate(s.entry.id, s.entry.section, s.score, s.entry.question, s.entry.title) for s in result.ranked
        ]
        reply.score = result.ranked[0].score if result.ranked else 0.0
        reply.reason = result.reason
        if result.route == Route.FAQ:
            e = result.ranked[0].entry
            reply.route, reply.faq_id, reply.section = Route.FAQ, e.id, e.section
            reply.text = texts.faq_text(e.question, e.answer)
            if result.partial is not None:  # the entry answers the main need, not the detail asked next to it
                reply.text = texts.partial_answer_text(e.question, e.answer, result.partial.says)
                reply.reason = f"{reply.reason};{MatchReason.PARTIAL.about(result.partial.id)}"
        elif result.route == Route.CLARIFY and result.partial is not None:
            reply.route = Route.CLARIFY
            wanted = set(result.partial.entries)
            shown = [c for c in reply.candidates[:3] if c.score >= th.related or c.faq_id in wanted]
            reply.choices = shown or reply.candidates[:1]
            reply.text = texts.partial_offer_text(result.partial.says, reply.choices)
        elif result.partial is not None:  # a detail of no entry: say what the FAQ does not cover
            reply.route = Route.NONE
            reply.choices = [c for c in reply.candidates[:3] if c.score >= th.related]
            reply.text = texts.partial_none_text(result.partial.says, reply.choices)
        elif result.route == Route.CLARIFY:
            reply.route = Route.CLARIFY
            reply.choices = [c for c in reply.candidates[:3] if c.score >= th.related] or reply.candidates[:1]
            reply.text = texts.clarify_text(reply.choices)
        else:
            reply.route = Route.NONE
            if not result.reason.startswith(MatchReason.FOREIGN_TERM):
                reply.choices = [c for c in reply.candidates[:3] if c.score >= th.related]
            reply.text = texts.out_of_scope_text(reply.choices)

    def _chosen(self, conv: Conversation, picked: int, reply: Reply) -> Reply:
        reply.via = "choice"
        if picked == 0:
            reply.route, reply.reason, reply.text = Route.NONE, Reason.NONE_OF_THESE, texts.NONE_OF_THESE_ACK
            return reply
        c = conv.pending_choices[picked - 1]
        e = self.kb.get(c.faq_id)
        if e is None:  # knowledge reloaded meanwhile
            reply.text, reply.reason = texts.STALE_BUTTON, Reason.STALE_CHOICE
            return reply
        reply.route, reply.faq_id, reply.section, reply.score = Route.FAQ, e.id, e.section, c.score
        reply.reason = Reason.CHOSEN
        reply.candidates = [c]
        reply.text = texts.faq_text(e.question, e.answer)
        return reply

    def _finish_sync(self, reply: Reply, started: float) -> Reply:
        if reply.masked:
            reply.text = f"{reply.text}\n\n{texts.PII_NOTE}"
        if reply.traditional:
            reply.text = to_traditional(reply.text)
        reply.latency_ms = (time.perf_counter() - started) * 1000
        return reply

    # -- the full pipeline, for channels --------------------------------------------------------
    def wants_llm(self, reply: Reply) -> bool:
        if self.llm is None or reply.reason in NOT_A_QUESTION or reply.reason == Reason.CHOSEN:
            return False
        if reply.reason.startswith(MatchReason.PARTIAL.about("")):
            # The question is about a detail the FAQ lacks (partial.toml): the honest line and the related entries
            # are the answer; a model limited to the FAQ's text has nothing more to say and would only drop the line.
            return False
        if reply.route is Route.NONE:
            return True
        return reply.route is Route.CLARIFY and self.settings.llm_for_clarify

    async def stream(self, question: str, conv: Conversation, *, via: str = "text") -> AsyncIterator[Draft | Reply]:
        """Yield unverified Drafts (for progressive display only), then exactly one final Reply."""
        started = time.perf_counter()
        try:
            reply = self.match(question, conv)
            if via != "text":
                reply.via = via
            if self.wants_llm(reply):
                final: Reply | None = None
                async for event in self.llm.stream(reply, conv):  # type: ignore[union-attr]
                    if isinstance(event, Draft):
                        yield event
                    else:
                        final = event
                if final is not None:
                    reply = final
        except Exception as exc:  # never an exception to the user
            log.exception("answering failed")
            reply = Reply(
                route=Route.NONE,
                text=texts.ERROR,
                error=f"{type(exc).__name__}: {exc}",
                knowledge_version=self.kb.version,
                reason=Reason.ERROR,
            )
        reply.latency_ms = (time.perf_counter() - started) * 1000
        self._record(conv, reply)
        yield reply

    async def answer(self, question: str, conv: Conversation, *, via: str = "text") -> Reply:
        final = None
        async for event in self.stream(question, conv, via=via):
            if isinstance(event, Reply):
                final = event
        assert final is not None
        return final

    def answer_entry(
        self, faq_id: str, conv: Conversation, *, via: str = "button", traditional: bool = False
    ) -> Reply | None:
        """The curated answer of one entry (a topic button or a clarify choice). None when the id is unknown."""
        e = self.kb.get(faq_id)
        if e is None:
            return None
        reply = Reply(
            route=Route.FAQ,
            text=texts.faq_text(e.question, e.answer),
            question=e.question,
            normalized="",
            faq_id=e.id,
            section=e.section,
            score=100.0,
            reason=Reason.CHOSEN,
            via=via,
            candidates=[Candidate(e.id, e.section, 100.0, e.question, e.title)],
            knowledge_version=self.kb.version,
            traditional=traditional,
        )
        if traditional:
            reply.text = to_traditional(reply.text)
        self._record(conv, reply)
        return reply

    def feedback(self, turn_id: str, kind: str) -> None:
        try:
            kind = FeedbackKind(kind)
        except ValueError:
            raise ValueError(f"unknown feedback kind {kind!r}") from None
        if self.turn_sink is not None:
            self.turn_sink.record_feedback(turn_id, kind)

    def _record(self, conv: Conversation, reply: Reply) -> None:
        conv.remember(reply)
        if self.turn_sink is not None:
            try:
                self.turn_sink.record_turn(conv, reply)
            except Exception:  # the log must never break answering
                log.exception("could not queue the turn for the log")
