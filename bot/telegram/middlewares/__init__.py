"""Cross-cutting work, kept out of the handlers: one middleware per module.

Outgoing, on the bot session (every Bot API call):

* `response_types.KeepResponseTypes`: keeps pydantic's cache of response models warm.
* `retries.RetryRequestMiddleware`: retries Bot API calls refused by flood control (429, after ``retry_after``,
  capped) or lost to a 5xx / proxy error page / network error, a bounded number of times, without ever sending a
  message twice.

Incoming, on the dispatcher (updates):

* `in_flight.InFlightMiddleware` (outer, every update): tracks the tasks handling updates, so shutdown can wait
  for them, and remembers the last update id (to confirm it to Telegram on shutdown).
* `throttling.ThrottlingMiddleware` (inner, messages and button taps): more than N events in T seconds from one
  user -> one polite notice, then the user is ignored for a while.
* `answer_lock.AnswerLockMiddleware` (inner, question handlers flagged ``answer_lock``): one answer in the making
  per user; the user's next questions wait for it (answered in order); one arriving during an LLM generation gets
  `texts.BUSY_LLM`.
* `conversation.ConversationMiddleware` (inner): looks up the user's `Conversation` and hands it to the handler as
  ``conv``.

Both sides share `delivery` (what a Bot API call can raise; whether a failed call may still have shown the user
something) and the incoming ones `notice` (a best-effort notice to the user).
"""

from bot.telegram.middlewares.answer_lock import AnswerLockMiddleware
from bot.telegram.middlewares.conversation import ConversationMiddleware
from bot.telegram.middlewares.in_flight import InFlightMiddleware
from bot.telegram.middlewares.response_types import KeepResponseTypes
from bot.telegram.middlewares.retries import RetryRequestMiddleware
from bot.telegram.middlewares.throttling import ThrottlingMiddleware

__all__ = [
    "AnswerLockMiddleware",
    "ConversationMiddleware",
    "InFlightMiddleware",
    "KeepResponseTypes",
    "RetryRequestMiddleware",
    "ThrottlingMiddleware",
]
