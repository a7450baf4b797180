"""Tunables of the Telegram adapter that are not deployment settings (limits, intervals, retries).

Production uses the defaults; tests pass smaller values (e.g. a 0.2 s edit interval) to stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TelegramOptions:
    # -- incoming flood control (per Telegram user) ---------------------------------------------------
    throttle_rate: int = 5  # more than this many messages/taps ...
    throttle_period: float = 10.0  # ... within this many seconds -> one polite notice ...
    throttle_silence: float = 30.0  # ... then ignored for this long

    # -- outgoing requests: retries of failed Bot API calls (request middleware) ------------------------
    retry_attempts: int = 3  # retries after the first failure (so at most 4 tries)
    retry_after_cap: float = 30.0  # never sleep longer than this on a 429, whatever retry_after says
    retry_backoff: float = 0.5  # first delay after a 5xx / network error; doubles each retry

    # -- progressive display of LLM answers -----------------------------------------------------------
    edit_interval: float = 1.5  # groups: a placeholder message is edited at most this often
    draft_interval: float = 0.4  # private chats: sendMessageDraft at most this often
    typing_delay: float = 0.3  # typing indicator only if the answer takes longer than this

    # -- state ----------------------------------------------------------------------------------------
    max_conversations: int = 10_000  # (chat, user) conversations kept in memory (LRU)

    # -- tell the asker ----------------------------------------------------------------------------------
    notify_offer: bool = True  # 有答案时通知我 under out-of-scope answers in private chats

    # -- lifecycle ------------------------------------------------------------------------------------
    polling_timeout: int = 10  # getUpdates long-poll seconds
    drain_timeout: float = 30.0  # on shutdown, wait this long for answers in flight
