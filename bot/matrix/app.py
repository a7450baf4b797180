"""The Matrix transport's features: answering questions in rooms and taking 👍/👎 reactions as feedback, through the
shared answering core. Logging in, syncing, room membership and sending are ``bot.matrix.sync`` (with
``rooms`` and ``sending``): this module only registers handlers, as a maubot plugin would.

``run_matrix(services, settings, stop)`` runs the bot until ``stop`` is set (see ``MatrixSync.run``). Behaviour:

* direct rooms (the bot and one person) get an answer to every text message; group rooms only to messages that
  mention the bot (``m.mentions``, a pill, its user id or display name in the text), reply to one of its messages,
  or answer its numbered offer with a bare number;
* answers are ``m.text`` replies (``m.in_reply_to``) with an intentional mention of the asker (``m.mentions``), so
  the asker's client notifies them (the default push rule for ``m.notice`` silences notices before the mention rule
  is reached); only unsolicited messages (the welcome, the encrypted-room notice) are ``m.notice``. Answers stay
  in the thread when the question was in one, with a plain ``body`` and an HTML ``formatted_body``; a "did you
  mean" offer is a numbered list answered by number (0 = none of these, logged as feedback 'none' on the offer);
* 👍/👎 reactions on an answer are logged as feedback on its turn; removing the reaction (a redaction) withdraws it
  (the person's other thumbs reaction on that answer, if any, counts again); typing notifications run while
  answering;
* admin commands and 通知我 are ``bot.matrix.curation``; answers the knowledge gained since are followed up
  (``bot.answering.follow_ups``) at start and after every reload;
* one ``Conversation`` per (room, user), channel "matrix", chat type "direct" or "group"; the turns go to the log
  through the core.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cachetools import LRUCache
from mautrix.client import Client
from mautrix.errors import MatrixError
from mautrix.types import BaseMessageEventContentFuncs, EventType, MessageType, ReactionEvent, RedactionEvent

from bot.answering import texts
from bot.answering.follow_ups import follow_up, offers_notify
from bot.answering.types import Conversation, FeedbackKind, Reason, Reply, Route
from bot.matrix.curation import MatrixCuration
from bot.matrix.format import looks_like_pick, mentions_user, reaction_kind, reply_content, strip_mention, text_content
from bot.matrix.sending import ANSWER_MSGTYPE
from bot.matrix.sync import MatrixSync

if TYPE_CHECKING:
    from mautrix.types import MessageEvent

    from bot.app.services import Services
    from bot.app.settings import Settings

log = logging.getLogger("faqbot.matrix")

CHANNEL = "matrix"
TEXT_TYPES = (MessageType.TEXT, MessageType.EMOTE)
MAX_CONVERSATIONS = 10_000
MAX_ANSWERS = 10_000  # answer event id -> turn id, for reactions


@dataclass
class _ConvState:
    conv: Conversation
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    offer_turn_id: str | None = None  # the turn that made the current numbered offer


class MatrixBot:
    """The features on one ``MatrixSync`` connection (``matrix``: the client, its rooms, sending, the sync loop)."""

    def __init__(self, services: Services, settings: Settings, *, client: Client | None = None):
        self.matrix = MatrixSync(services, settings, client=client)
        self.client = self.matrix.client
        self.ready = self.matrix.ready  # set once syncing runs (tests wait on it)
        self.rooms = self.matrix.rooms
        self.sender = self.matrix.sender
        self.services = services
        self.settings = settings
        self.answerer = services.answerer
        self._convs: LRUCache = LRUCache(MAX_CONVERSATIONS)
        self.answers: LRUCache = LRUCache(MAX_ANSWERS)  # bot answer event id -> turn id
        self.curation = MatrixCuration(services, settings)  # admin commands, 通知我 (bot/matrix/curation.py)
        self._bot_events: LRUCache = LRUCache(MAX_ANSWERS)  # event id -> sent by the bot? (reply detection)
        self._reactions: LRUCache = LRUCache(MAX_ANSWERS)  # reaction event id -> (answer id, sender, kind)
        self._thumbs: LRUCache = LRUCache(MAX_ANSWERS)  # (answer id, sender) -> kinds of their present reactions
        self._redacted: LRUCache = LRUCache(MAX_ANSWERS)  # redacted event ids not seen (yet) as reactions
        self.matrix.on(EventType.ROOM_MESSAGE, self._on_message)
        self.matrix.on(EventType.REACTION, self._on_reaction)
        self.matrix.on(EventType.ROOM_REDACTION, self._on_redaction)

    @property
    def mxid(self) -> str:
        return self.client.mxid

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.matrix.run(stop, started=self._started)
        finally:
            self.services.followers.pop(CHANNEL, None)

    async def _started(self) -> None:
        self.services.followers[CHANNEL] = self._follow_ups  # after any reload (bot/answering/follow_ups.py)
        await self._follow_ups()  # a restart is a reload too

    async def _follow_ups(self) -> None:
        async def send(room_id: str, text: str) -> None:
            if await self.sender.send(room_id, text_content(text, msgtype=ANSWER_MSGTYPE)) is None:
                raise RuntimeError("not sent")

        try:
            await follow_up(self.answerer, self.settings.db, CHANNEL, send)
        except Exception:
            log.exception("Matrix follow-up answers failed")

    # ------------------------------------------------------------------ messages
    def _state(self, room_id: str, user_id: str) -> _ConvState:
        key = (room_id, user_id)
        state = self._convs.get(key)
        if state is None:
            state = self._convs[key] = _ConvState(
                Conversation(channel=CHANNEL, chat_id=room_id, chat_type="group", user_id=user_id)
            )
        return state

    async def _sent_by_bot(self, room_id: str, event_id: str) -> bool:
        if event_id in self.answers:
            return True
        known = self._bot_events.get(event_id)
        if known is not None:
            return known
        try:
            evt = await self.client.get_event(room_id, event_id)
            mine = str(evt.sender) == self.mxid
        except MatrixError:
            mine = False
        self._bot_events[event_id] = mine
        return mine

    async def _on_message(self, evt: MessageEvent) -> None:
        room_id, sender = str(evt.room_id), str(evt.sender)
        if sender == self.mxid or self.rooms.is_history(room_id, evt.timestamp) or not self.rooms.accepts(room_id):
            return
        content = evt.content
        known = isinstance(content, BaseMessageEventContentFuncs)  # else an unknown msgtype (a bare Obj)
        if (known and content.get_edit() is not None) or getattr(content, "msgtype", None) == MessageType.NOTICE:
            return  # edits are not new questions; notices come from other bots
        state = self._state(room_id, sender)  # taken before any await: answers keep the order of the questions
        async with state.lock:
            direct = await self.rooms.member_count(room_id) <= 2
            state.conv.chat_type = "direct" if direct else "group"
            thread_root = content.get_thread_parent() if known else None
            reply_to = content.get_reply_to() if known else None
            if known and content.relates_to.is_falling_back:
                reply_to = None  # a thread's fallback reply, not a real one
            msgtype = getattr(content, "msgtype", None) if known else None
            if msgtype not in TEXT_TYPES or not isinstance(getattr(content, "body", None), str):
                if direct:
                    await self.sender.send(
                        room_id,
                        text_content(
                            texts.NON_TEXT,
                            in_reply_to=str(evt.event_id),
                            thread_root=thread_root,
                            mention=sender,
                            msgtype=ANSWER_MSGTYPE,
                        ),
                    )
                return
            body: str = content.body
            handled = await self.curation.handle(
                room_id=room_id,
                sender=sender,
                body=body,
                direct=direct,
                replied_turn=self.answers.get(str(reply_to)) if reply_to is not None else None,
            )
            if handled is not None:
                await self.sender.send(
                    room_id,
                    text_content(
                        handled,
                        in_reply_to=str(evt.event_id),
                        thread_root=thread_root,
                        mention=sender,
                        msgtype=ANSWER_MSGTYPE,
                    ),
                )
                return
            if not direct:
                display_name = self.matrix.display_name
                addressed = (
                    mentions_user(content, self.mxid, display_name)
                    or (reply_to is not None and await self._sent_by_bot(room_id, str(reply_to)))
                    or (bool(state.conv.pending_choices) and looks_like_pick(body, len(state.conv.pending_choices)))
                )
                if not addressed:
                    return
            question = strip_mention(body, self.mxid, self.matrix.display_name)
            await self._answer(state, room_id, str(evt.event_id), sender, question, thread_root, direct)

    async def _answer(
        self,
        state: _ConvState,
        room_id: str,
        event_id: str,
        sender: str,
        question: str,
        thread_root: str | None,
        direct: bool,
    ) -> None:
        conv = state.conv
        offer = state.offer_turn_id if conv.pending_choices else None
        async with self.sender.typing(room_id):
            final: Reply | None = None
            async for event in self.answerer.stream(question, conv):
                if isinstance(event, Reply):
                    final = event  # Drafts (unverified LLM text) are not shown: Matrix gets the verified answer
        if final is None:  # the core always ends with a Reply; be safe anyway
            return
        if final.reason == Reason.NONE_OF_THESE and offer is not None:
            self.answerer.feedback(offer, FeedbackKind.NONE)
        state.offer_turn_id = final.turn_id if final.route is Route.CLARIFY else None
        content = reply_content(
            final, in_reply_to=event_id, thread_root=thread_root, mention=sender, msgtype=ANSWER_MSGTYPE
        )
        answer_id = await self.sender.send(room_id, content)
        if answer_id is not None:
            self.answers[answer_id] = final.turn_id
            if direct and offers_notify(final):  # "reply 通知我" (bot/matrix/curation.py), to this hint or the answer
                hint_id = await self.sender.send(room_id, text_content(texts.MATRIX_NOTIFY_HINT, in_reply_to=answer_id))
                if hint_id is not None:
                    self.answers[hint_id] = final.turn_id

    # ------------------------------------------------------------------ reactions
    async def _on_reaction(self, evt: ReactionEvent) -> None:
        room_id, sender = str(evt.room_id), str(evt.sender)
        if sender == self.mxid or self.rooms.is_history(room_id, evt.timestamp):
            return
        rel = evt.content.relates_to
        kind = reaction_kind(rel.key)
        answer_id = str(rel.event_id) if rel.event_id else None
        turn_id = self.answers.get(answer_id) if answer_id else None
        if kind is None or turn_id is None:
            return
        if self._redacted.pop(str(evt.event_id), None):
            return  # already removed: its redaction was handled first (an encrypted reaction is decrypted later)
        self._reactions[str(evt.event_id)] = (answer_id, sender, kind)
        present = self._thumbs.get((answer_id, sender)) or []
        if kind in present:
            return  # the same thumb twice (another device): already counted
        self._thumbs[(answer_id, sender)] = [*present, kind]
        self.answerer.feedback(turn_id, kind)
        log.debug("Matrix: feedback %s on turn %s", kind, turn_id)

    async def _on_redaction(self, evt: RedactionEvent) -> None:
        """A removed 👍/👎: the person's remaining thumbs reaction on that answer counts, else 'withdrawn'."""
        if self.rooms.is_history(str(evt.room_id), evt.timestamp):
            return
        if not evt.redacts:
            return
        found = self._reactions.pop(str(evt.redacts), None)
        if found is None:
            # Maybe a reaction not handled yet: an encrypted one is still being decrypted when the (plaintext)
            # redaction that removes it arrives in the same sync. Remember it, so that reaction is not counted.
            self._redacted[str(evt.redacts)] = True
            return
        answer_id, sender, kind = found
        present = [k for k in (self._thumbs.get((answer_id, sender)) or []) if k != kind]
        self._thumbs[(answer_id, sender)] = present
        turn_id = self.answers.get(answer_id)
        if turn_id is None:
            return
        now = present[-1] if present else FeedbackKind.WITHDRAWN
        self.answerer.feedback(turn_id, now)
        log.debug("Matrix: feedback %s withdrawn on turn %s (now %s)", kind, turn_id, now)


async def run_matrix(services: Services, settings: Settings, stop: asyncio.Event) -> None:
    """Run the Matrix transport until ``stop`` is set; then stop syncing, finish the answers in flight and return.
    The caller owns ``services`` (and drains the log afterwards)."""
    bot = MatrixBot(services, settings)
    await bot.run(stop)
