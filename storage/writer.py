"""The bot's conversation log writer: answering never waits on disk.

``record_turn`` / ``record_feedback`` only turn their arguments into privacy-safe rows and put them on an
``asyncio.Queue``. One writer task takes them off in order, in batches, and commits each batch in a single
``BEGIN IMMEDIATE`` transaction. When the database is unavailable (locked past the busy timeout, read-only,
disk full, I/O error, folder missing) the rows stay in memory (bounded), one warning is logged per outage, and
the writer retries every ``retry_interval`` until the database is back.
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import hashlib
import json
import logging
import sqlite3
import time
from collections import deque
from pathlib import Path
from collections.abc import Callable
from typing import Any, NamedTuple

import aiosqlite

from bot.answering.privacy import mask_pii, pseudonymize
from bot.answering.types import Conversation, Reply
from storage.db import BUSY_TIMEOUT_MS, open_db, utc_iso
from storage.schema import FEEDBACK_KINDS, TURN_COLUMNS
from storage.trace import encode_candidates, stored_llm_raw


# Chats whose id identifies a person: stored as an HMAC, like user ids.
PRIVATE_CHAT_TYPES = frozenset({"private", "direct", "console", "cli"})  # "direct": a Matrix DM room

# Errors caused by one row's data rather than by the database being unavailable: retrying cannot fix them.
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, ValueError, TypeError)

_FEEDBACK_SQL = "INSERT INTO feedback (turn_id, kind, ts) VALUES (?, ?, ?)"
# A knowledge version is stored once (storage/trace.py); a turn row refers to it.
_VERSION_SQL = "INSERT OR IGNORE INTO knowledge_versions (version) VALUES (?)"
# A turn row holds a value for each of schema.TURN_COLUMNS, in that order, except for the two references: the
# conversation's key and the knowledge version's text, which the INSERT turns into row ids.
_TURN_VALUES = {
    "conversation_id": "(SELECT id FROM conversations WHERE key = ?)",
    "knowledge_id": "(SELECT id FROM knowledge_versions WHERE version = ?)",
}
_VERSION_AT = TURN_COLUMNS.index("knowledge_id")  # index of the knowledge version in a _Turn.row


# Rows go in as multi-row INSERTs, up to _CHUNK rows per statement. Why: executemany steps the statement once per
# row, and sqlite3 releases the GIL around every step; while the event loop thread is busy answering, taking it
# back waits up to the interpreter's switch interval (5 ms) -- per row. Under load the log then fell seconds behind
# the answers (tests/load/test_signals.py, kill -9). A chunk takes the GIL back once.
_CHUNK = 32
# (statement head, one row's placeholders, tail) per table.
_INSERTS = {
    "conversations": ("INSERT OR IGNORE INTO conversations (key, channel, chat_id, chat_type, user_hash, started) "
                      "VALUES ", "(?, ?, ?, ?, ?, ?)", ""),
    "turns": (f"INSERT INTO turns ({', '.join(TURN_COLUMNS)}) VALUES ",
              "(" + ", ".join(_TURN_VALUES.get(c, "?") for c in TURN_COLUMNS) + ")",
              " ON CONFLICT(id) DO NOTHING"),
}


@functools.lru_cache(maxsize=2 * _CHUNK)
def _multi_row_sql(table: str, n: int) -> str:
    head, row, tail = _INSERTS[table]
    return head + ", ".join([row] * n) + tail


_CONV_SQL = _multi_row_sql("conversations", 1)
_TURN_SQL = _multi_row_sql("turns", 1)


def _insert_chunks(conn: sqlite3.Connection, table: str, rows: list[tuple]) -> int:
    """Insert ``rows`` in statements of up to _CHUNK rows; returns the number of rows inserted."""
    inserted = 0
    for i in range(0, len(rows), _CHUNK):
        chunk = rows[i:i + _CHUNK]
        cur = conn.execute(_multi_row_sql(table, len(chunk)), [v for row in chunk for v in row])
        inserted += cur.rowcount
    return inserted


class _Turn(NamedTuple):
    seq: int
    turn_id: str
    conv: tuple  # values for _CONV_SQL
    row: tuple  # values for _TURN_SQL (second value is the conversation key)


def _versions(turns: list[_Turn]) -> list[tuple[str]]:
    return [(v,) for v in sorted({t.row[_VERSION_AT] for t in turns} - {None})]


class _RawTurn(NamedTuple):
    """What record_turn queues: a snapshot of references, prepared (masked, pseudonymized, JSON) by the writer task
    in batches, so the answering path pays only for an append."""

    seq: int
    turn_id: str
    when: float  # time.time() at record_turn
    channel: str
    chat_id: Any
    chat_type: str
    user_id: Any
    reply: Reply


class _Feedback(NamedTuple):
    seq: int
    turn_id: str
    kind: str
    ts: str


_WAKE = object()  # put on the queue by flush()/close() to cut the batching wait short


class _Outage(Exception):
    """The database could not be written; the rows of the batch are back in the buffer."""


def conversation_key(channel: str, chat_id: str | None, user_hash: str | None) -> str:
    """sha256 of channel|chat_id|user_hash, over the values as stored (private chat ids already pseudonymized)."""
    return hashlib.sha256(f"{channel}|{chat_id or ''}|{user_hash or ''}".encode()).hexdigest()


def _counts(masked: Any) -> dict[str, int]:
    counts = getattr(masked, "counts", None) or {}
    return {k: int(counts.get(k, 0) or 0) for k in ("id", "phone", "bank")}


class TurnLog:
    """Asynchronous, batched, privacy-safe writer of turns and feedback to the SQLite conversation log."""

    def __init__(
        self,
        path: str | Path,
        *,
        secret: bytes,
        batch_max: int = 200,
        flush_interval: float = 0.05,
        memory_bound: int = 50_000,
        retry_interval: float = 0.5,
        logger: logging.Logger | None = None,
        busy_timeout: float = BUSY_TIMEOUT_MS / 1000,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        if not secret:
            raise ValueError("TurnLog needs a non-empty secret for pseudonymizing ids")
        if batch_max < 1 or memory_bound < 1:
            raise ValueError("batch_max and memory_bound must be >= 1")
        self.path = Path(path)
        self._secret = bytes(secret)
        self.batch_max = batch_max
        self.flush_interval = flush_interval
        self.memory_bound = memory_bound
        self.retry_interval = retry_interval
        self.busy_timeout = busy_timeout
        self.log = logger or logging.getLogger("faqbot.storage")
        # Removes configured secrets from every stored text (an LLM server may echo the API key in an error).
        self._redact = redact or str

        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._buf: deque[_RawTurn | _Feedback] = deque()  # taken off the queue, waiting to be written
        self._inflight: list[_RawTurn | _Feedback] = []  # the batch being written now
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None

        self._seq = 0  # last sequence number handed out
        self._done_seq = 0  # every row with seq <= this is committed or dropped
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

        self._pending = 0
        self.committed = 0  # rows (turns + feedback) committed
        self.transactions = 0  # write transactions committed
        self.failures = 0  # failed attempts to open or write the database
        self.dropped = 0  # rows given up: over memory_bound, bad data, unknown turn, recorded after close
        self.last_error: str | None = None
        self._outage_since: float | None = None
        self._outage_dropped = 0
        self._warned_closed = False
        self._warned_prepare = False
        self._pseudonyms: dict[str, str] = {}
        self.remasked = 0  # turns whose question still held personal data when recorded (an upstream miss)

    # ------------------------------------------------------------------ state

    @property
    def pending(self) -> int:
        """Rows recorded but not yet committed (queued, buffered during an outage, or being written)."""
        return self._pending

    @property
    def healthy(self) -> bool:
        """The writer runs and the last write (or open) succeeded."""
        return (
            self._task is not None and not self._task.done() and self._outage_since is None and not self._closing
        )

    # ------------------------------------------------------------------ producer side (never blocks)

    def record_turn(self, conv: Conversation, reply: Reply) -> None:
        """Queue one answered turn. Never blocks, never raises; problems are logged and counted in ``dropped``."""
        try:
            if self._closing:
                self._drop_after_close()
                return
            item = _RawTurn(0, str(reply.turn_id), time.time(), conv.channel, conv.chat_id, conv.chat_type,
                            conv.user_id, reply)
        except Exception:
            self._prepare_failed()
            return
        self._enqueue(item)

    def _prepare_failed(self, failed: list[tuple[str, str]] | None = None) -> None:
        self.dropped += len(failed) if failed else 1
        if not self._warned_prepare:
            self._warned_prepare = True
            if failed:
                self.log.error("conversation log: could not prepare turn(s) for storage; not logged: %s",
                               "; ".join(f"{t}: {e}" for t, e in failed[:3]))
            else:
                self.log.exception("conversation log: could not prepare a turn for storage; it is not logged")

    def record_feedback(self, turn_id: str, kind: str) -> None:
        """Queue feedback on a turn: 'up', 'down', 'none' (none of the offered choices) or 'withdrawn' (the earlier
        feedback was taken back). Never blocks."""
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"unknown feedback kind {kind!r}; expected one of {FEEDBACK_KINDS}")
        if self._closing:
            self._drop_after_close()
            return
        self._enqueue(_Feedback(0, str(turn_id), kind, utc_iso()))

    def _drop_after_close(self) -> None:
        self.dropped += 1
        if not self._warned_closed:
            self._warned_closed = True
            self.log.warning("conversation log is closed; rows recorded after close() are not logged")

    def _enqueue(self, item: _RawTurn | _Feedback) -> None:
        # Keep memory bounded: drop the oldest rows not being written right now.
        while self._pending - len(self._inflight) >= self.memory_bound:
            if self._buf:
                self._buf.popleft()
            else:
                try:
                    old = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if old is _WAKE:
                    continue
            self._pending -= 1
            self.dropped += 1
            if self._outage_dropped == 0:
                self.log.error(
                    "conversation log: more than %d rows waiting for the database; dropping the oldest",
                    self.memory_bound,
                )
            self._outage_dropped += 1
        self._seq += 1
        self._pending += 1
        self._queue.put_nowait(item._replace(seq=self._seq))

    def pseudonym(self, value: str) -> str:
        """The HMAC pseudonym the log stores for a user id or private chat id (to check who owns a turn)."""
        return self._pseudonym(value)

    def _pseudonym(self, value: str) -> str:
        # The same few users ask many questions: cache their HMAC (bounded; the cache lives only in memory).
        cached = self._pseudonyms.get(value)
        if cached is None:
            if len(self._pseudonyms) >= 10_000:
                self._pseudonyms.clear()
            cached = self._pseudonyms[value] = pseudonymize(value, self._secret)
        return cached

    def _prepare_turn(self, raw: _RawTurn) -> _Turn:
        def mask(text: str | None) -> tuple[str | None, dict[str, int]]:
            if text is None:
                return None, {"id": 0, "phone": 0, "bank": 0}
            m = mask_pii(self._redact(str(text)))
            return m.text, _counts(m)

        reply = raw.reply
        ts = utc_iso(_dt.datetime.fromtimestamp(raw.when, _dt.timezone.utc))
        channel = str(raw.channel)
        user_id = None if raw.user_id in (None, "") else str(raw.user_id)
        user_hash = self._pseudonym(user_id) if user_id is not None else None
        chat_id = None if raw.chat_id in (None, "") else str(raw.chat_id)
        chat_type = raw.chat_type
        private = chat_type in PRIVATE_CHAT_TYPES or (user_id is not None and chat_id == user_id)
        stored_chat = self._pseudonym(chat_id) if (private and chat_id is not None) else chat_id
        key = conversation_key(channel, stored_chat, user_hash)

        # Defensive: the core masks the question already; masking is idempotent, so this only catches misses.
        question, extra = mask(reply.question)
        normalized, _ = mask(reply.normalized)
        answer, _ = mask(reply.text)
        llm_raw, _ = mask(reply.llm_raw)
        guard, _ = mask(reply.guard)
        error, _ = mask(reply.error)
        if any(extra.values()):
            self.remasked += 1
            if self.remasked == 1:  # a bug upstream: say it once, count the rest
                self.log.warning("conversation log: personal data found in an already masked question; masked now")
        given = reply.masked or {}
        masked = {k: int(given.get(k, 0) or 0) + extra[k] for k in ("id", "phone", "bank")}

        candidates = encode_candidates(reply.candidates)
        context_ids = json.dumps([str(c) for c in reply.context_ids], ensure_ascii=False)
        route = reply.route.value if hasattr(reply.route, "value") else str(reply.route)
        turn_id = str(reply.turn_id)
        row = (
            turn_id,
            key,
            ts,
            channel,
            reply.via,
            question,
            normalized,
            route,
            reply.faq_id,
            None if reply.section is None else int(reply.section),
            float(reply.score) if reply.score is not None else None,
            candidates,
            context_ids,
            reply.model,
            stored_llm_raw(llm_raw, answer),
            guard,
            answer,
            # whole milliseconds: a REAL without a fraction is stored as a 1-3 byte integer instead of 8 bytes
            float(round(reply.latency_ms)) if reply.latency_ms is not None else None,
            reply.knowledge_version or None,
            error,
            masked["id"],
            masked["phone"],
            masked["bank"],
        )
        conv_row = (key, channel, stored_chat, chat_type, user_hash, ts)
        return _Turn(0, turn_id, conv_row, row)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the database (migrating it) and start the writer task.

        A database that cannot be opened does not stop the bot: the failure is logged as an outage, rows are
        kept in memory and the writer keeps retrying. Check ``healthy`` / ``last_error`` to report it.
        """
        if self._task is not None:
            return
        if self._closing:
            raise RuntimeError("TurnLog was closed")
        try:
            self._conn = await self._open()
        except (sqlite3.Error, OSError) as exc:
            self._enter_outage(exc)
        self._task = asyncio.create_task(self._run(), name="turnlog-writer")

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every row recorded before this call is committed (or dropped). TimeoutError on timeout."""
        target = self._seq
        if self._done_seq >= target:
            return
        if self._task is None:
            raise RuntimeError("TurnLog.start() was not called")
        if self._task.done():
            raise RuntimeError("the conversation log writer is not running")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        self._queue.put_nowait(_WAKE)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        finally:
            if not fut.done():
                fut.cancel()
                self._waiters = [(t, f) for t, f in self._waiters if f is not fut]

    async def close(self, timeout: float | None = 30.0) -> None:
        """Commit everything recorded so far, then close. Idempotent.

        If the database stays unavailable for ``timeout`` seconds, gives up and logs how many rows were lost.
        """
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close(timeout))
        await asyncio.shield(self._close_task)

    async def _close(self, timeout: float | None) -> None:
        self._closing = True
        task = self._task
        if task is not None and not task.done():
            self._queue.put_nowait(_WAKE)
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except asyncio.TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            except Exception:  # the task itself failed; already logged there
                pass
        lost = self._pending
        if lost:
            self.dropped += lost
            self.log.error(
                "conversation log closed with %d rows not written (%s)", lost, self.last_error or "writer stopped"
            )
        await self._reset_conn()
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(RuntimeError("conversation log closed before the rows were written"))
        self._waiters.clear()

    async def __aenter__(self) -> TurnLog:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ writer task

    async def _open(self) -> aiosqlite.Connection:
        return await open_db(self.path, busy_timeout_ms=int(self.busy_timeout * 1000))

    async def _reset_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                pass

    def _take(self, item: Any) -> bool:
        """Move one queue item to the buffer (preparing a raw turn); True if it was a wake-up signal."""
        if item is _WAKE:
            return True
        self._buf.append(item)
        return False

    def _drain(self) -> bool:
        woke = False
        while True:
            try:
                woke |= self._take(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return woke

    async def _gather(self) -> None:
        """Fill the buffer: wait for a first row, then up to flush_interval for more (cut short by flush/close)."""
        loop = asyncio.get_running_loop()
        while not self._buf:
            if self._closing and self._queue.empty():
                return
            if self._conn is None and self._outage_since is not None and not self._closing:
                # Idle during an outage: keep probing, so `healthy` recovers without waiting for the next row.
                try:
                    async with asyncio.timeout(self.retry_interval):
                        item = await self._queue.get()
                except TimeoutError:
                    await self._probe()
                    continue
            else:
                item = await self._queue.get()
            self._take(item)
        if self._closing or self._outage_since is not None:
            self._drain()
            return
        deadline = loop.time() + self.flush_interval
        while len(self._buf) < self.batch_max:
            if self._drain() or self._closing:
                return
            remaining = deadline - loop.time()
            if remaining <= 0 or len(self._buf) >= self.batch_max:
                return
            try:
                async with asyncio.timeout(remaining):
                    item = await self._queue.get()
            except TimeoutError:
                return
            if self._take(item):
                return

    async def _run(self) -> None:
        while True:
            try:
                if not self._buf:
                    await self._gather()
                else:
                    self._drain()
                if not self._buf:
                    if self._closing and self._queue.empty():
                        return
                    continue
                await self._write_some()
            except asyncio.CancelledError:
                raise
            except _Outage:
                await self._reset_conn()
                await asyncio.sleep(self.retry_interval)
            except Exception as exc:  # a bug, not the disk: log it (once per distinct error), keep the rows, go on
                self.failures += 1
                error = f"{type(exc).__name__}: {exc}"
                if error != self.last_error:
                    self.log.exception("conversation log writer error")
                self.last_error = error
                if self._inflight:
                    self._buf.extendleft(reversed(self._inflight))
                    self._inflight = []
                await self._reset_conn()
                await asyncio.sleep(self.retry_interval)

    def _enter_outage(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            self._outage_dropped = 0
            self.log.warning(
                "conversation log %s unavailable (%s); keeping rows in memory (up to %d) and retrying every %g s",
                self.path,
                self.last_error,
                self.memory_bound,
                self.retry_interval,
            )

    def _leave_outage(self) -> None:
        if self._outage_since is None:
            if self._outage_dropped:  # rows dropped because the writer fell behind, without an outage
                self.log.error("conversation log: %d rows were dropped over the memory bound", self._outage_dropped)
                self._outage_dropped = 0
            return
        took = time.monotonic() - self._outage_since
        self._outage_since = None
        if self._outage_dropped:
            self.log.error(
                "conversation log available again after %.1f s; %d rows were dropped over the memory bound",
                took,
                self._outage_dropped,
            )
        else:
            self.log.warning("conversation log available again after %.1f s; no rows lost", took)
        self._outage_dropped = 0

    async def _probe(self) -> None:
        try:
            self._conn = await self._open()
        except (sqlite3.Error, OSError) as exc:
            self._enter_outage(exc)
            return
        self._leave_outage()

    async def _write_some(self) -> None:
        if self._conn is None:
            try:
                self._conn = await self._open()
            except (sqlite3.Error, OSError) as exc:
                self._enter_outage(exc)
                raise _Outage from exc
        n = min(self.batch_max, len(self._buf))
        batch = [self._buf.popleft() for _ in range(n)]
        self._inflight = batch
        try:
            skipped = await self._write_batch(batch)
        except _DATA_ERRORS as exc:
            self._inflight = []
            self.log.warning("conversation log: a batch failed on its data (%s); writing its rows one by one", exc)
            await self._write_one_by_one(batch)
            return
        except (sqlite3.Error, OSError) as exc:
            self._buf.extendleft(reversed(batch))
            self._inflight = []
            self._enter_outage(exc)
            raise _Outage from exc
        self._inflight = []
        self._done(batch, skipped=skipped)

    async def _write_one_by_one(self, batch: list[_RawTurn | _Feedback]) -> None:
        for i, item in enumerate(batch):
            self._inflight = [item]
            try:
                skipped = await self._write_batch([item])
            except _DATA_ERRORS as exc:
                self._inflight = []
                self.dropped += 1
                self._pending -= 1
                self.log.error("conversation log: dropping row for turn %s: %s", item.turn_id, exc)
                self._done([item], committed=False)
                continue
            except (sqlite3.Error, OSError) as exc:
                self._buf.extendleft(reversed(batch[i:]))
                self._inflight = []
                self._enter_outage(exc)
                raise _Outage from exc
            self._inflight = []
            self._done([item], skipped=skipped)

    def _done(self, items: list[_RawTurn | _Feedback], committed: bool = True, skipped: int = 0) -> None:
        """Mark rows as finished (committed, or skipped inside a committed batch) and wake flush() waiters."""
        if committed:
            self._pending -= len(items)
            self.committed += len(items) - skipped
        self._leave_outage()
        self._done_seq = max(self._done_seq, items[-1].seq)
        self._resolve_waiters()

    def _resolve_waiters(self) -> None:
        still = []
        for target, fut in self._waiters:
            if fut.done():
                continue
            if target <= self._done_seq:
                fut.set_result(None)
            else:
                still.append((target, fut))
        self._waiters = still

    async def _write_batch(self, batch: list[_RawTurn | _Feedback]) -> int:
        """Write one batch in one transaction; return how many rows were skipped (duplicate turn id, feedback
        for an unknown turn)."""
        conn = self._conn
        assert conn is not None
        raw = [i for i in batch if isinstance(i, _RawTurn)]
        feedback = [i for i in batch if isinstance(i, _Feedback)]
        # The whole transaction in one call to the connection's thread, not one round trip per statement: under
        # load the event loop is busy and each round trip waits for it, so with four of them the log fell one to
        # two seconds behind the answers (found by tests/load/test_signals.py: that is what a kill -9 loses).
        # aiosqlite (pinned) has no public API for running a function in its thread; `_execute` and `_conn`
        # exist since 0.17. Without them the statements are sent one by one, as before.
        run_in_thread = getattr(conn, "_execute", None)
        # Rows are prepared (masked, pseudonymized, JSON) in the same thread call: off the event loop, which under
        # load is busy with answering, so the log does not fall behind the answers.
        if run_in_thread is not None and hasattr(type(conn), "_conn"):
            unknown, duplicates, failed = await run_in_thread(self._prepare_and_write_in_thread, conn, raw, feedback)
        else:
            turns, failed = self._prepare_all(raw)
            unknown, duplicates = await self._transaction_by_statements(conn, turns, feedback)
        self.transactions += 1
        if failed:
            self._prepare_failed(failed)
        if unknown:
            self.dropped += len(unknown)
            self.log.warning(
                "conversation log: dropped feedback for %d unknown turn id(s): %s",
                len(unknown),
                ", ".join(sorted({f.turn_id[:32] for f in unknown})[:5]),
            )
        if duplicates:
            self.dropped += duplicates
            self.log.warning("conversation log: %d turn id(s) were already logged; kept the first copy", duplicates)
        return len(unknown) + duplicates + len(failed)

    def _prepare_all(self, raw: list[_RawTurn]) -> tuple[list[_Turn], list[tuple[str, str]]]:
        turns: list[_Turn] = []
        failed: list[tuple[str, str]] = []  # (turn id, error)
        for r in raw:
            try:
                turns.append(self._prepare_turn(r)._replace(seq=r.seq))
            except Exception as exc:  # a malformed reply: drop that row, keep the batch
                failed.append((r.turn_id, f"{type(exc).__name__}: {exc}"))
        return turns, failed

    def _prepare_and_write_in_thread(
        self, aconn: aiosqlite.Connection, raw: list[_RawTurn], feedback: list[_Feedback]
    ) -> tuple[list[_Feedback], int, list[tuple[str, str]]]:
        turns, failed = self._prepare_all(raw)
        unknown, duplicates = _transaction_in_thread(aconn, turns, feedback)
        return unknown, duplicates, failed

    @staticmethod
    async def _transaction_by_statements(
        conn: aiosqlite.Connection, turns: list[_Turn], feedback: list[_Feedback]
    ) -> tuple[list[_Feedback], int]:
        unknown: list[_Feedback] = []
        duplicates = 0
        await conn.execute("BEGIN IMMEDIATE")
        try:
            if turns:
                await conn.executemany(_CONV_SQL, [t.conv for t in turns])
                await conn.executemany(_VERSION_SQL, _versions(turns))
                cur = await conn.executemany(_TURN_SQL, [t.row for t in turns])
                if cur.rowcount is not None and 0 <= cur.rowcount < len(turns):
                    duplicates = len(turns) - cur.rowcount
            if feedback:
                ids = sorted({f.turn_id for f in feedback})
                marks = ",".join("?" * len(ids))
                rows = await conn.execute_fetchall(f"SELECT id FROM turns WHERE id IN ({marks})", ids)
                known = {r[0] for r in rows}
                unknown = [f for f in feedback if f.turn_id not in known]
                good = [(f.turn_id, f.kind, f.ts) for f in feedback if f.turn_id in known]
                if good:
                    await conn.executemany(_FEEDBACK_SQL, good)
            await conn.execute("COMMIT")
        except BaseException:
            try:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
            except Exception:
                pass
            raise
        return unknown, duplicates


def _transaction_in_thread(
    aconn: aiosqlite.Connection, turns: list[_Turn], feedback: list[_Feedback]
) -> tuple[list[_Feedback], int]:
    """`TurnLog._write_batch` in the aiosqlite connection's own thread: the same statements, synchronously."""
    conn: sqlite3.Connection = aconn._conn  # noqa: SLF001 - see _write_batch
    unknown: list[_Feedback] = []
    duplicates = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        if turns:
            _insert_chunks(conn, "conversations", [t.conv for t in turns])
            conn.executemany(_VERSION_SQL, _versions(turns))
            inserted = _insert_chunks(conn, "turns", [t.row for t in turns])
            if 0 <= inserted < len(turns):
                duplicates = len(turns) - inserted
        if feedback:
            ids = sorted({f.turn_id for f in feedback})
            marks = ",".join("?" * len(ids))
            known = {r[0] for r in conn.execute(f"SELECT id FROM turns WHERE id IN ({marks})", ids).fetchall()}
            unknown = [f for f in feedback if f.turn_id not in known]
            good = [(f.turn_id, f.kind, f.ts) for f in feedback if f.turn_id in known]
            if good:
                conn.executemany(_FEEDBACK_SQL, good)
        conn.execute("COMMIT")
    except BaseException:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except Exception:
            pass
        raise
    return unknown, duplicates
