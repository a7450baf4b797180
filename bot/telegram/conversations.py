"""One `Conversation` per (chat, user), kept in a bounded LRU so follow-up questions keep their history."""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import LRUCache

from bot.answering.types import Conversation


@dataclass
class ChatState:
    conv: Conversation
    traditional: bool = False  # the user's last question was in Traditional script (buttons answer in kind)


class ConversationStore:
    """Least-recently-used map (chat id, user id) -> ChatState, at most ``maxsize`` entries.

    In-memory and per process: with several webhook instances a user's follow-up may land on an instance that
    does not know the history; answers are still correct, only context for the LLM follow-ups is lost.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: LRUCache[tuple[int, int], ChatState] = LRUCache(maxsize)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._items

    def state(self, chat_id: int, chat_type: str, user_id: int) -> ChatState:
        key = (chat_id, user_id)
        st = self._items.get(key)
        if st is None:
            conv = Conversation(
                channel="telegram", chat_id=str(chat_id), chat_type=str(chat_type), user_id=str(user_id)
            )
            st = ChatState(conv)
            self._items[key] = st  # the least recently used one goes when full
        return st

    def get(self, chat_id: int, chat_type: str, user_id: int) -> Conversation:
        return self.state(chat_id, chat_type, user_id).conv
