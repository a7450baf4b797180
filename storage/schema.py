"""The conversation log's current schema as the code uses it: the columns of a turn and the review view.

One place for facts every reader and writer needs. The migrations (storage/migrations.py) are the history that
builds this schema and keep their own literal SQL (a shipped migration never changes); tests/storage/test_schema.py
checks that a migrated database has exactly these columns, so a column added by a new migration must be added here.
"""

from __future__ import annotations

from bot.answering.types import FeedbackKind

# The feedback kinds the schema's CHECK accepts (migration m003): bot.answering.types.FeedbackKind's values.
FEEDBACK_KINDS = tuple(k.value for k in FeedbackKind)
# What `logs list --feedback` and the review queue filter on: a latest kind, or 'any' feedback at all.
FEEDBACK_FILTERS = tuple(k.value for k in FeedbackKind if k is not FeedbackKind.WITHDRAWN) + ("any",)

# The stored columns of `turns`, in the order readers see them (the table itself has knowledge_id last: migration m008
# added it). `conversation_id` and `knowledge_id` refer to rows of `conversations` and `knowledge_versions`; the
# writer fills them from the conversation key and the version text.
TURN_COLUMNS = (
    "id",
    "conversation_id",
    "ts",
    "channel",
    "via",
    "question",
    "normalized",
    "route",
    "faq_id",
    "section",
    "score",
    "candidates",
    "context_ids",
    "model",
    "llm_raw",
    "guard",
    "answer",
    "latency_ms",
    "knowledge_id",
    "error",
    "masked_id",
    "masked_phone",
    "masked_bank",
)
# Columns holding JSON arrays (candidates: storage/trace.py's compact format; context_ids: entry ids).
JSON_COLUMNS = ("candidates", "context_ids")

# The review view (migration m009): every turn as readers see it plus what curators review it by. Every review
# query, the export and Datasette's canned queries select from it, so "latest feedback", "a gap" and "the latest
# review" are defined once, in SQL, in that migration.
REVIEW_VIEW = "turn_review"
# A turn as readers see it: the stored columns with the knowledge version's text instead of its id and the LLM's
# raw output decoded (storage/trace.py), ...
TURN_READ_COLUMNS = tuple("knowledge_version" if c == "knowledge_id" else c for c in TURN_COLUMNS)
# ... then what the view adds: the turn's rowid (logging order, in the ts index), the conversation's chat type,
# feedback (latest kind, withdrawn = NULL) and counts of every thumbs / none-of-these row, whether the turn shows a
# gap in the FAQ, and its latest review (id, status, verdict, entry) with `settled` (that review needs nothing more)
# and the gap's reasons (space-separated: route:clarify, route:none, guard-fail, thumbs-down, none-of-these).
REVIEW_COLUMNS = (
    "turn_rowid",
    "chat_type",
    "feedback",
    "thumbs_up",
    "thumbs_down",
    "none_of_these",
    "is_gap",
    "review_id",
    "review_status",
    "review_verdict",
    "review_entry",
    "settled",
    "gap_reasons",
)
VIEW_COLUMNS = TURN_READ_COLUMNS + REVIEW_COLUMNS
