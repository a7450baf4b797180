"""Schema migrations for the conversation log.

Each migration is a plain function taking a ``sqlite3.Connection``, registered in order with ``@migration``.
``migrate(conn)`` applies the ones not yet recorded in ``_migrations`` and records each, in its own write
transaction (``storage.transactions``; SQLite DDL is transactional, so a migration is applied whole or not at all).
Never edit a migration that has shipped; add a new one.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from collections.abc import Callable

from storage.transactions import immediate_transaction

MigrationFn = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[MigrationFn] = []


def migration(fn: MigrationFn) -> MigrationFn:
    MIGRATIONS.append(fn)
    return fn


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _has_migrations_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone()
    return row is not None


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations recorded in this database, in the order they were applied."""
    if not _has_migrations_table(conn):
        return []
    return [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY applied_at, name")]


def migrate(conn: sqlite3.Connection, *, upto: str | None = None) -> list[str]:
    """Apply pending migrations in order; return the names applied now (empty when already up to date).

    ``upto`` stops after the migration with that name (used by tests to build a database at an older version).
    The connection must not be inside a transaction. Safe to run from several processes at once: the pending
    set is re-read under the write lock, so a migration is never applied twice.
    """
    if conn.in_transaction:
        raise RuntimeError("migrate() needs a connection outside a transaction")
    wanted: list[MigrationFn] = []
    for fn in MIGRATIONS:
        wanted.append(fn)
        if fn.__name__ == upto:
            break
    else:
        if upto is not None:
            raise ValueError(f"unknown migration {upto!r}")

    # Read-only check first: an up-to-date database needs no write lock (so opening never waits on a busy writer).
    done = set(applied_migrations(conn))
    if all(fn.__name__ in done for fn in wanted):
        return []

    applied_now: list[str] = []
    for fn in wanted:
        name = fn.__name__
        with immediate_transaction(conn):
            conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                continue  # another process applied it meanwhile (leaving the block commits)
            fn(conn)
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, _now()))
        applied_now.append(name)
    return applied_now


def _run(conn: sqlite3.Connection, statements: list[str]) -> None:
    # One execute() per statement: executescript() would COMMIT the surrounding transaction.
    for sql in statements:
        conn.execute(sql)


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        [
            # key = sha256(channel|chat_id|user_hash), computed from the already pseudonymized values.
            # Raw user ids, names and usernames are never stored; a private chat's id is stored as its HMAC.
            """
            CREATE TABLE conversations (
                id INTEGER PRIMARY KEY,
                key TEXT UNIQUE NOT NULL,
                channel TEXT NOT NULL,
                chat_id TEXT,
                chat_type TEXT,
                user_hash TEXT,
                started TEXT NOT NULL
            )
            """,
            # id is Reply.turn_id (time-ordered hex). ts is ISO-8601 UTC with milliseconds, so text order = time order.
            # question/llm_raw are masked; candidates/context_ids are JSON arrays.
            """
            CREATE TABLE turns (
                id TEXT PRIMARY KEY,
                conversation_id INTEGER REFERENCES conversations(id) ON DELETE CASCADE,
                ts TEXT NOT NULL,
                channel TEXT NOT NULL,
                via TEXT,
                question TEXT,
                normalized TEXT,
                route TEXT NOT NULL,
                faq_id TEXT,
                section INTEGER,
                score REAL,
                candidates TEXT,
                context_ids TEXT,
                model TEXT,
                llm_raw TEXT,
                guard TEXT,
                answer TEXT,
                latency_ms REAL,
                knowledge_version TEXT,
                error TEXT,
                masked_id INTEGER DEFAULT 0,
                masked_phone INTEGER DEFAULT 0,
                masked_bank INTEGER DEFAULT 0
            )
            """,
            "CREATE INDEX turns_ts ON turns(ts)",
            "CREATE INDEX turns_route ON turns(route)",
            "CREATE INDEX turns_channel ON turns(channel)",
            "CREATE INDEX turns_faq_id ON turns(faq_id)",
            "CREATE INDEX turns_conversation ON turns(conversation_id)",
            """
            CREATE TABLE feedback (
                id INTEGER PRIMARY KEY,
                turn_id TEXT NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
                kind TEXT NOT NULL CHECK (kind IN ('up', 'down', 'none')),
                ts TEXT NOT NULL
            )
            """,
            "CREATE INDEX feedback_turn ON feedback(turn_id)",
            """
            CREATE TABLE reviews (
                id INTEGER PRIMARY KEY,
                turn_id TEXT NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
                status TEXT NOT NULL DEFAULT 'open',
                label TEXT,
                note TEXT,
                reviewer TEXT,
                ts TEXT NOT NULL
            )
            """,
            "CREATE INDEX reviews_turn ON reviews(turn_id)",
        ],
    )


@migration
def m002_turns_fts(conn: sqlite3.Connection) -> None:
    # Trigram tokenizer: the default (unicode61) tokenizer treats a run of Chinese characters as one token, so
    # '社保卡' would not match '电子社保卡怎么申领'. Trigram matches any substring of >= 3 characters.
    # External content table: the text lives once, in turns; triggers keep the index in step.
    # turns has a TEXT primary key, so its rowid is implicit and VACUUM may renumber it: after a VACUUM the
    # index must be rebuilt (storage.purge does this).
    _run(
        conn,
        [
            """
            CREATE VIRTUAL TABLE turns_fts USING fts5(
                question, normalized, answer,
                content='turns', content_rowid='rowid', tokenize='trigram'
            )
            """,
            """
            CREATE TRIGGER turns_fts_ai AFTER INSERT ON turns BEGIN
                INSERT INTO turns_fts (rowid, question, normalized, answer)
                VALUES (new.rowid, new.question, new.normalized, new.answer);
            END
            """,
            """
            CREATE TRIGGER turns_fts_ad AFTER DELETE ON turns BEGIN
                INSERT INTO turns_fts (turns_fts, rowid, question, normalized, answer)
                VALUES ('delete', old.rowid, old.question, old.normalized, old.answer);
            END
            """,
            """
            CREATE TRIGGER turns_fts_au AFTER UPDATE ON turns BEGIN
                INSERT INTO turns_fts (turns_fts, rowid, question, normalized, answer)
                VALUES ('delete', old.rowid, old.question, old.normalized, old.answer);
                INSERT INTO turns_fts (rowid, question, normalized, answer)
                VALUES (new.rowid, new.question, new.normalized, new.answer);
            END
            """,
            # Index the rows that existed before this migration.
            "INSERT INTO turns_fts (turns_fts) VALUES ('rebuild')",
        ],
    )


@migration
def m003_feedback_withdrawn(conn: sqlite3.Connection) -> None:
    # Feedback may be taken back (a removed 👍/👎 reaction on Matrix): kind 'withdrawn', the latest row of a turn
    # counts. SQLite cannot alter a CHECK constraint, so the table is rebuilt (ids kept: they order the rows).
    _run(
        conn,
        [
            """
            CREATE TABLE feedback_new (
                id INTEGER PRIMARY KEY,
                turn_id TEXT NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
                kind TEXT NOT NULL CHECK (kind IN ('up', 'down', 'none', 'withdrawn')),
                ts TEXT NOT NULL
            )
            """,
            "INSERT INTO feedback_new (id, turn_id, kind, ts) SELECT id, turn_id, kind, ts FROM feedback",
            "DROP TABLE feedback",
            "ALTER TABLE feedback_new RENAME TO feedback",
            "CREATE INDEX feedback_turn ON feedback(turn_id)",
        ],
    )


# Latency bucket of the daily summary: the latency rounded to two significant digits (0.1 ms steps below 10 ms,
# 1 ms below 100 ms, 10 ms below 1 s, ...), so a percentile read from the buckets is within 5% of the exact one.
LATENCY_BUCKET_SQL = (
    "CASE WHEN {x} < 10 THEN round({x}, 1) WHEN {x} < 100 THEN round({x}) WHEN {x} < 1000 THEN round({x} / 10) * 10 "
    "WHEN {x} < 10000 THEN round({x} / 100) * 100 WHEN {x} < 100000 THEN round({x} / 1000) * 1000 "
    "ELSE round({x} / 10000) * 10000 END"
)
# A turn's key in stats_daily, from a row of turns aliased as {t}.
_STATS_KEY = "substr({t}.ts, 1, 10), {t}.channel, {t}.route, coalesce({t}.faq_id, '')"
# The latest feedback kind of turn {tid} (the last word counts, as in review queries).
_LATEST_KIND = "(SELECT f.kind FROM feedback f WHERE f.turn_id = {tid} ORDER BY f.id DESC LIMIT 1)"


def _stats_add(t: str, sign: str) -> list[str]:
    """Statements adding (sign '+') or removing ('-') turn row {t} (NEW or OLD) to/from the daily summary."""
    key = _STATS_KEY.format(t=t)
    latest = _LATEST_KIND.format(tid=f"{t}.id")
    bucket = LATENCY_BUCKET_SQL.format(x=f"{t}.latency_ms")
    return [
        f"""
        INSERT INTO stats_daily (day, channel, route, faq_id, turns, guard_failures, errors, fb_up, fb_down, fb_none)
        SELECT {key}, {sign}1, {sign}coalesce({t}.guard LIKE 'fail%', 0), {sign}({t}.error IS NOT NULL),
               {sign}(k = 'up'), {sign}(k = 'down'), {sign}(k = 'none')
        FROM (SELECT coalesce({latest}, '') AS k) WHERE true
        ON CONFLICT (day, channel, route, faq_id) DO UPDATE SET
            turns = turns + excluded.turns, guard_failures = guard_failures + excluded.guard_failures,
            errors = errors + excluded.errors, fb_up = fb_up + excluded.fb_up, fb_down = fb_down + excluded.fb_down,
            fb_none = fb_none + excluded.fb_none;
        """,
        f"""
        INSERT INTO stats_latency (day, bucket, n)
        SELECT substr({t}.ts, 1, 10), {bucket}, {sign}1 WHERE {t}.latency_ms IS NOT NULL
        ON CONFLICT (day, bucket) DO UPDATE SET n = n + excluded.n;
        """,
    ]


def _feedback_move(turn_id: str, before: str, after: str) -> str:
    """UPDATE moving turn {turn_id}'s latest-feedback count from kind ``before`` to ``after`` (SQL expressions)."""
    return f"""
        UPDATE stats_daily SET
            fb_up = fb_up - ({before} = 'up') + ({after} = 'up'),
            fb_down = fb_down - ({before} = 'down') + ({after} = 'down'),
            fb_none = fb_none - ({before} = 'none') + ({after} = 'none')
        WHERE (day, channel, route, faq_id) = (SELECT {_STATS_KEY.format(t="t")} FROM turns t WHERE t.id = {turn_id});
    """


@migration
def m004_log_at_scale(conn: sqlite3.Connection) -> None:
    """What a year of traffic (a million turns) needs: a daily summary, a search index of the question only, and
    indexes the review queries use (EXPLAIN QUERY PLAN of each is checked in tests/storage/test_scale.py)."""
    # 1. The search index covers the question only: indexing the normalized question and the answer too tripled its
    #    size (~660 of ~2,300 bytes a turn) while curators search what people asked. detail=full (the default)
    #    stays: Datasette's ?_search= sends phrase queries, which detail=none cannot answer.
    _run(
        conn,
        [
            "DROP TRIGGER IF EXISTS turns_fts_ai",
            "DROP TRIGGER IF EXISTS turns_fts_ad",
            "DROP TRIGGER IF EXISTS turns_fts_au",
            "DROP TABLE IF EXISTS turns_fts",
            """
        CREATE VIRTUAL TABLE turns_fts USING fts5(
            question, content='turns', content_rowid='rowid', tokenize='trigram'
        )
        """,
            """
        CREATE TRIGGER turns_fts_ai AFTER INSERT ON turns BEGIN
            INSERT INTO turns_fts (rowid, question) VALUES (new.rowid, new.question);
        END
        """,
            """
        CREATE TRIGGER turns_fts_ad AFTER DELETE ON turns BEGIN
            INSERT INTO turns_fts (turns_fts, rowid, question) VALUES ('delete', old.rowid, old.question);
        END
        """,
            """
        CREATE TRIGGER turns_fts_au AFTER UPDATE OF question ON turns BEGIN
            INSERT INTO turns_fts (turns_fts, rowid, question) VALUES ('delete', old.rowid, old.question);
            INSERT INTO turns_fts (rowid, question) VALUES (new.rowid, new.question);
        END
        """,
            "INSERT INTO turns_fts (turns_fts) VALUES ('rebuild')",
        ],
    )
    # 2. Indexes. Per-column indexes on channel and faq_id served only `stats` (now the summary) and cost ~30 bytes
    #    a turn; route gets (route, ts) so `list --route X` and the gap queries read one range, newest first.
    _run(
        conn,
        [
            "DROP INDEX IF EXISTS turns_channel",
            "DROP INDEX IF EXISTS turns_faq_id",
            "DROP INDEX IF EXISTS turns_route",
            "CREATE INDEX turns_route_ts ON turns(route, ts)",
        ],
    )
    # 3. The daily summary `stats` reads instead of the turns: one row per (UTC day, channel, route, entry) with
    #    counts, the latest feedback of each turn, and latency buckets. Kept by triggers, so every writer (the bot,
    #    purge, a curator's UPDATE) keeps it exact in the same transaction.
    _run(
        conn,
        [
            """
        CREATE TABLE stats_daily (
            day TEXT NOT NULL, channel TEXT NOT NULL, route TEXT NOT NULL, faq_id TEXT NOT NULL,
            turns INTEGER NOT NULL DEFAULT 0, guard_failures INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0, fb_up INTEGER NOT NULL DEFAULT 0, fb_down INTEGER NOT NULL DEFAULT 0,
            fb_none INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, channel, route, faq_id)
        ) WITHOUT ROWID
        """,
            """
        CREATE TABLE stats_latency (
            day TEXT NOT NULL, bucket REAL NOT NULL, n INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, bucket)
        ) WITHOUT ROWID
        """,
            "CREATE TRIGGER stats_turns_ai AFTER INSERT ON turns BEGIN " + "".join(_stats_add("new", "+")) + " END",
            # BEFORE: the turn's feedback is still there (a cascade removes it after the row).
            "CREATE TRIGGER stats_turns_bd BEFORE DELETE ON turns BEGIN " + "".join(_stats_add("old", "-")) + " END",
            "CREATE TRIGGER stats_turns_au AFTER UPDATE OF ts, channel, route, faq_id, guard, error, latency_ms ON turns "
            "BEGIN " + "".join(_stats_add("old", "-")) + "".join(_stats_add("new", "+")) + " END",
            # Feedback: only the latest kind of a turn counts, so a new latest moves the turn from the old kind.
            f"""
        CREATE TRIGGER stats_feedback_ai AFTER INSERT ON feedback
        WHEN NOT EXISTS (SELECT 1 FROM feedback f WHERE f.turn_id = new.turn_id AND f.id > new.id)
        BEGIN
            {
                _feedback_move(
                    "new.turn_id",
                    "coalesce((SELECT f.kind FROM feedback f WHERE f.turn_id = new.turn_id AND f.id < new.id "
                    "ORDER BY f.id DESC LIMIT 1), '')",
                    "new.kind",
                )
            }
        END
        """,
            # Removing the latest feedback makes the one before it (or none) count. When the turn itself is being
            # deleted (a cascade), the turn row is gone and nothing is updated: its counts left with it.
            f"""
        CREATE TRIGGER stats_feedback_ad AFTER DELETE ON feedback
        WHEN NOT EXISTS (SELECT 1 FROM feedback f WHERE f.turn_id = old.turn_id AND f.id > old.id)
        BEGIN
            {_feedback_move("old.turn_id", "old.kind", "coalesce(" + _LATEST_KIND.format(tid="old.turn_id") + ", '')")}
        END
        """,
            # Existing rows: one pass.
            f"""
        INSERT INTO stats_daily (day, channel, route, faq_id, turns, guard_failures, errors, fb_up, fb_down, fb_none)
        SELECT day, channel, route, faq_id, count(*), sum(g), sum(e), sum(k = 'up'), sum(k = 'down'), sum(k = 'none')
        FROM (SELECT substr(t.ts, 1, 10) AS day, t.channel, t.route,
                     coalesce(t.faq_id, '') AS faq_id, coalesce(t.guard LIKE 'fail%', 0) AS g,
                     t.error IS NOT NULL AS e, coalesce({_LATEST_KIND.format(tid="t.id")}, '') AS k
              FROM turns t)
        GROUP BY day, channel, route, faq_id
        """,
            f"""
        INSERT INTO stats_latency (day, bucket, n)
        SELECT substr(ts, 1, 10), {LATENCY_BUCKET_SQL.format(x="latency_ms")} AS b, count(*)
        FROM turns WHERE latency_ms IS NOT NULL GROUP BY 1, 2
        """,
        ],
    )


@migration
def m005_review_verdicts(conn: sqlite3.Connection) -> None:
    # Curators' verdicts (storage/reviews.py): the entry a turn should have been answered by, and checks that hold
    # for every writer -- Datasette's writable canned queries connect without foreign_keys, so the turn's
    # existence is checked by a trigger too.
    _run(
        conn,
        [
            "ALTER TABLE reviews ADD COLUMN faq_id TEXT",
            """
            CREATE TRIGGER reviews_check BEFORE INSERT ON reviews BEGIN
                SELECT RAISE(ABORT, 'unknown verdict')
                WHERE NEW.label IS NULL
                   OR NEW.label NOT IN ('correct', 'entry', 'new-entry', 'out-of-scope', 'spam');
                SELECT RAISE(ABORT, 'verdict entry needs an entry id')
                WHERE NEW.label = 'entry' AND coalesce(NEW.faq_id, '') = '';
                SELECT RAISE(ABORT, 'unknown turn')
                WHERE NOT EXISTS (SELECT 1 FROM turns WHERE id = NEW.turn_id);
                SELECT RAISE(ABORT, 'a review needs a reviewer')
                WHERE coalesce(trim(NEW.reviewer), '') = '';
            END
            """,
        ],
    )


@migration
def m006_drop_route_index(conn: sqlite3.Connection) -> None:
    # (route, ts) cost ~43 bytes a turn (a route and a 24-character timestamp per row) for `list --route X`, which
    # the ts index serves as well: every route is common enough that a page is found within a few hundred newest
    # turns (EXPLAIN QUERY PLAN: SCAN t USING INDEX turns_ts, stopping at the page).
    _run(conn, ["DROP INDEX IF EXISTS turns_route_ts"])


# While a row of this table exists (only inside `logs purge`'s own transaction, so no other connection ever sees
# it), deleting a turn leaves the daily summary alone: purge subtracts the whole batch with one grouped UPDATE
# instead (the per-row trigger was ~40% of the time a purge took).
BULK_DELETE_TABLE = "_stats_bulk_delete"


@migration
def m007_purge_summary_in_bulk(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        [
            f"CREATE TABLE {BULK_DELETE_TABLE} (id INTEGER PRIMARY KEY)",
            "DROP TRIGGER stats_turns_bd",
            f"CREATE TRIGGER stats_turns_bd BEFORE DELETE ON turns WHEN NOT EXISTS (SELECT 1 FROM {BULK_DELETE_TABLE}) "
            "BEGIN " + "".join(_stats_add("old", "-")) + " END",
        ],
    )


@migration
def m008_knowledge_versions_and_llm_raw(conn: sqlite3.Connection) -> None:
    """Two facts stored once instead of per turn (storage/trace.py): the knowledge version (~12 bytes a turn, one
    value per release) moves to `knowledge_versions`, referenced by `turns.knowledge_id`; an LLM's raw output equal
    to the answer (~90% of LLM turns, ~75 bytes a turn on average) is stored as ''. Existing rows are converted here,
    in this migration's transaction (one pass over the table)."""
    _run(
        conn,
        [
            "CREATE TABLE knowledge_versions (id INTEGER PRIMARY KEY, version TEXT UNIQUE NOT NULL)",
            "ALTER TABLE turns ADD COLUMN knowledge_id INTEGER REFERENCES knowledge_versions(id)",
            "INSERT INTO knowledge_versions (version) SELECT knowledge_version FROM turns "
            "WHERE knowledge_version IS NOT NULL GROUP BY knowledge_version ORDER BY min(ts)",
            """
        UPDATE turns SET
            knowledge_id = (SELECT kv.id FROM knowledge_versions kv WHERE kv.version = turns.knowledge_version),
            llm_raw = CASE WHEN llm_raw = '' THEN NULL WHEN llm_raw = answer THEN '' ELSE llm_raw END
        WHERE knowledge_version IS NOT NULL OR llm_raw = '' OR llm_raw = answer
        """,
            "ALTER TABLE turns DROP COLUMN knowledge_version",
        ],
    )


def _turn_review_view() -> str:
    """CREATE VIEW turn_review (storage/schema.py REVIEW_VIEW), as m011 left it; m009 and m011 create it."""
    # The latest feedback of the turn (the last word counts); a latest 'withdrawn' (taken back) reads as none.
    latest_feedback = (
        "(SELECT nullif(f.kind, 'withdrawn') FROM feedback f WHERE f.turn_id = t.id ORDER BY f.id DESC LIMIT 1)"
    )
    # The signals of a gap in the FAQ: routed clarify/none, an LLM answer the guard rejected, latest feedback
    # thumbs-down or none-of-these.
    gap_route = "t.route IN ('clarify', 'none')"
    gap_guard = "t.guard LIKE 'fail%'"
    gap_feedback = f"{latest_feedback} IN ('down', 'none')"

    def latest_review(column: str) -> str:  # highest id = latest
        return f"(SELECT r.{column} FROM reviews r WHERE r.turn_id = t.id ORDER BY r.id DESC LIMIT 1)"

    def count(kind: str) -> str:
        return f"(SELECT count(*) FROM feedback f WHERE f.turn_id = t.id AND f.kind = '{kind}')"

    return f"""
        CREATE VIEW turn_review AS
        SELECT t.id, t.conversation_id, t.ts, t.channel, t.via, t.question, t.normalized, t.route, t.faq_id,
               t.section, t.score, t.candidates, t.context_ids, t.model,
               CASE WHEN t.llm_raw = '' THEN t.answer ELSE t.llm_raw END AS llm_raw,
               t.guard, t.answer, t.latency_ms,
               (SELECT kv.version FROM knowledge_versions kv WHERE kv.id = t.knowledge_id) AS knowledge_version,
               t.error, t.masked_id, t.masked_phone, t.masked_bank,
               t.rowid AS turn_rowid,
               (SELECT c.chat_type FROM conversations c WHERE c.id = t.conversation_id) AS chat_type,
               {latest_feedback} AS feedback,
               {count("up")} AS thumbs_up, {count("down")} AS thumbs_down, {count("none")} AS none_of_these,
               -- 0 or 1: the guard and feedback tests are NULL for a turn with neither
               coalesce({gap_route} OR {gap_guard} OR {gap_feedback}, 0) AS is_gap,
               (SELECT max(r.id) FROM reviews r WHERE r.turn_id = t.id) AS review_id,
               {latest_review("status")} AS review_status,
               {latest_review("label")} AS review_verdict,
               {latest_review("faq_id")} AS review_entry,
               -- the latest review leaves nothing to do (verdict correct / out-of-scope / spam, or applied)
               coalesce({latest_review("status")} IN ('closed', 'applied'), 0) AS settled,
               -- why the turn is a gap, space-separated ('' when it is none)
               trim(CASE WHEN {gap_route} THEN 'route:' || t.route || ' ' ELSE '' END
                    || CASE WHEN {gap_guard} THEN 'guard-fail ' ELSE '' END
                    || CASE {latest_feedback} WHEN 'down' THEN 'thumbs-down' WHEN 'none' THEN 'none-of-these'
                       ELSE '' END) AS gap_reasons
        FROM turns t
    """


@migration
def m009_turn_review_view(conn: sqlite3.Connection) -> None:
    """The review view (storage/schema.py REVIEW_VIEW): every turn as readers see it, with its latest feedback,
    feedback counts, whether it shows a gap and its latest review. The review commands, the export and Datasette's
    canned queries all select from it, so these definitions exist once, here. A plain view that SQLite flattens into
    each query: a column costs only where a query uses it, and the turns' indexes serve it as before."""
    _run(conn, [_turn_review_view()])


@migration
def m010_facet_indexes(conn: sqlite3.Connection) -> None:
    """Indexes for Datasette's facets on the turns table, and none on turns.conversation_id.

    A facet is ``SELECT col, count(*) FROM turns GROUP BY col``: with an index on the column it reads that index
    (about 3,000 pages at a million turns) instead of the table (195,000 pages), 0.1-0.2 s instead of timing out.

    turns_conversation served only purge (conversations left without turns) and the foreign key's cascade when a
    conversation is deleted, which only purge does. Conversation ids are spread at random over time, so every purge
    batch of the oldest turns rewrote most pages of that index (about 60% of the pages a batch wrote at a million
    turns); storage/purge.py now finds the conversations left without turns without it. Net, the log grows by
    about 6 bytes a turn."""
    _run(
        conn,
        [
            "DROP INDEX IF EXISTS turns_conversation",
            "CREATE INDEX IF NOT EXISTS turns_route ON turns(route)",
            "CREATE INDEX IF NOT EXISTS turns_channel ON turns(channel)",
        ],
    )


@migration
def m011_gap_flag_never_null(conn: sqlite3.Connection) -> None:
    """turn_review.is_gap is 0 or 1 for every turn. As m009 wrote it, a turn with no guard verdict and no feedback
    (most direct answers) got NULL: `guard LIKE 'fail%'` and `feedback IN (...)` are NULL there, so both
    `is_gap` and `NOT is_gap` were false and the review queue's second part never offered such a turn."""
    _run(conn, ["DROP VIEW IF EXISTS turn_review", _turn_review_view()])
