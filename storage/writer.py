"""The bot's conversation log writer: answering never waits on disk.

``record_turn`` / ``record_feedback`` only put a snapshot of their arguments on an ``asyncio.Queue``. One writer
task takes them off in order, in batches; the log's own thread turns each batch into privacy-safe rows
(``storage.rows.prepare_turn``: masking, HMAC, JSON -- off the event loop), and the batch is written in one
``BEGIN IMMEDIATE`` transaction through an aiosqlite connection (its public API only), in two trips through the
event loop a batch (``_write_batch`` says why).
When the database is unavailable (locked past the busy timeout, read-only, disk full, I/O error, folder missing)
the rows stay in memory (bounded), one warning is logged per outage, and the writer retries every
``retry_interval`` until the database is back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import aiosqlite

from bot.answering.privacy import pseudonymize
from bot.answering.types import Conversation, Reply
from storage.db import BUSY_TIMEOUT_MS, open_db, utc_iso
from storage.rows import TurnRows, prepare_turn
from storage.schema import FEEDBACK_KINDS, TURN_COLUMNS
from storage.transactions import BEGIN, COMMIT, ROLLBACK

# Errors caused by one row's data rather than by the database being unavailable: retrying cannot fix them.
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, ValueError, TypeError)

# Feedback on a turn the log has, once per (turn, kind, time): a retried batch must not count a click twice.
_FEEDBACK_SQL = (
    "INSERT INTO feedback (turn_id, kind, ts) SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM turns WHERE id = ?) "
    "AND NOT EXISTS (SELECT 1 FROM feedback WHERE turn_id = ? AND kind = ? AND ts = ?)"
)
# A knowledge version is stored once (storage/trace.py); a turn row refers to it.
_VERSION_SQL = "INSERT OR IGNORE INTO knowledge_versions (version) VALUES (?)"
# A turn row holds a value for each of schema.TURN_COLUMNS, in that order, except for the two references: the
# conversation's key and the knowledge version's text, which the INSERT turns into row ids.
_TURN_VALUES = {
    "conversation_id": "(SELECT id FROM conversations WHERE key = ?)",
    "knowledge_id": "(SELECT id FROM knowledge_versions WHERE version = ?)",
}
_VERSION_AT = TURN_COLUMNS.index("knowledge_id")  # where a prepared turn row holds the version


# Rows go in as multi-row INSERTs, as many rows per statement as SQLite's variable limit allows (a 200-row batch of
# turns is one statement). Why: executemany steps the statement once per row, and sqlite3 releases the GIL around
# every step; while the event loop thread is busy answering, taking it back waits up to the interpreter's switch
# interval (5 ms) -- per row. And every statement through aiosqlite is a round trip to the event loop, which is
# slow exactly when the bot is busy. Under load the log then fell seconds behind the answers
# (tests/load/test_signals.py, kill -9). A whole table's rows in one statement take the GIL back once, in one trip.
_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999  # SQLite's default limit
# (statement head, one row's placeholders, tail) per table.
_INSERTS = {
    "conversations": (
        "INSERT OR IGNORE INTO conversations (key, channel, chat_id, chat_type, user_hash, started) VALUES ",
        "(?, ?, ?, ?, ?, ?)",
        "",
    ),
    "turns": (
        f"INSERT INTO turns ({', '.join(TURN_COLUMNS)}) VALUES ",
        "(" + ", ".join(_TURN_VALUES.get(c, "?") for c in TURN_COLUMNS) + ")",
        " ON CONFLICT(id) DO NOTHING",
    ),
}


@functools.lru_cache(maxsize=64)
def _multi_row_sql(table: str, n: int) -> str:
    head, row, tail = _INSERTS[table]
    return head + ", ".join([row] * n) + tail


def _insert_statements(table: str, rows: list[tuple]) -> list[tuple[str, list]]:
    """(sql, parameters) inserting ``rows`` in as few statements as SQLite's variable limit allows."""
    per_statement = max(1, _MAX_VARIABLES // max(1, len(rows[0]))) if rows else 1
    return [
        (_multi_row_sql(table, len(chunk)), [v for row in chunk for v in row])
        for chunk in (rows[i : i + per_statement] for i in range(0, len(rows), per_statement))
    ]


def _versions(turns: list[TurnRows]) -> list[tuple[str]]:
    return [(v,) for v in sorted({t.turn[_VERSION_AT] for t in turns} - {None})]


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
        self.logger = logger or logging.getLogger("faqbot.storage")
        # Removes configured secrets from every stored text (an LLM server may echo the API key in an error).
        self._redact = redact or str

        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._buf: deque[_RawTurn | _Feedback] = deque()  # taken off the queue, waiting to be written
        self._inflight: list[_RawTurn | _Feedback] = []  # the batch being written now
        self._conn: aiosqlite.Connection | None = None
        # Rows are prepared on a thread of the log's own, not asyncio's default executor: aiogram runs synchronous
        # filters there (bot/telegram/filters.py), and under load a batch waited behind hundreds of them.
        self._prepare_thread: concurrent.futures.ThreadPoolExecutor | None = None
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
        # The same few users ask many questions: their HMAC is cached (bounded, in memory only). lru_cache, not a
        # plain LRU map: the worker thread (preparing rows) and the event loop (`pseudonym`) both call it.
        self._pseudonym = functools.lru_cache(maxsize=10_000)(self._hmac)
        self.remasked = 0  # turns whose question still held personal data when recorded (an upstream miss)

    # ------------------------------------------------------------------ state

    @property
    def pending(self) -> int:
        """Rows recorded but not yet committed (queued, buffered during an outage, or being written)."""
        return self._pending

    @property
    def healthy(self) -> bool:
        """The writer runs and the last write (or open) succeeded."""
        return self._task is not None and not self._task.done() and self._outage_since is None and not self._closing

    # ------------------------------------------------------------------ producer side (never blocks)

    def record_turn(self, conv: Conversation, reply: Reply) -> None:
        """Queue one answered turn. Never blocks, never raises; problems are logged and counted in ``dropped``."""
        try:
            if self._closing:
                self._drop_after_close()
                return
            item = _RawTurn(
                0, str(reply.turn_id), time.time(), conv.channel, conv.chat_id, conv.chat_type, conv.user_id, reply
            )
        except Exception:
            self._prepare_failed()
            return
        self._enqueue(item)

    def _prepare_failed(self, failed: list[tuple[str, str]] | None = None) -> None:
        self.dropped += len(failed) if failed else 1
        if not self._warned_prepare:
            self._warned_prepare = True
            if failed:
                self.logger.error(
                    "conversation log: could not prepare turn(s) for storage; not logged: %s",
                    "; ".join(f"{t}: {e}" for t, e in failed[:3]),
                )
            else:
                self.logger.exception("conversation log: could not prepare a turn for storage; it is not logged")

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
            self.logger.warning("conversation log is closed; rows recorded after close() are not logged")

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
                self.logger.error(
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

    def _hmac(self, value: str) -> str:
        return pseudonymize(value, self._secret)

    def _prepare_turn(self, raw: _RawTurn) -> TurnRows:
        return prepare_turn(
            raw.reply,
            when=raw.when,
            channel=raw.channel,
            chat_id=raw.chat_id,
            chat_type=raw.chat_type,
            user_id=raw.user_id,
            pseudonym=self._pseudonym,
            redact=self._redact,
        )

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
        self._prepare_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnlog")
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
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            except Exception:  # the task itself failed; already logged there
                pass
        lost = self._pending
        if lost:
            self.dropped += lost
            self.logger.error(
                "conversation log closed with %d rows not written (%s)", lost, self.last_error or "writer stopped"
            )
        await self._reset_conn()
        if self._prepare_thread is not None:
            self._prepare_thread.shutdown(wait=False)  # idle: the writer task has ended
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(RuntimeError("conversation log closed before the rows were written"))
        self._waiters.clear()

    async def connection_pragmas(self) -> dict[str, Any]:
        """``journal_mode`` and ``synchronous`` as set on the writer's own connection ({} while it is not open)."""
        conn = self._conn
        if conn is None:
            return {}

        out = {}
        for name in ("journal_mode", "synchronous"):
            async with conn.execute(f"PRAGMA {name}") as cur:
                out[name] = (await cur.fetchone())[0]
        return out

    async def __aenter__(self) -> TurnLog:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ writer task

    async def _open(self) -> aiosqlite.Connection:
        """Open (creating and migrating) the log; the checks and migrations run off the event loop (storage.db)."""
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
                    self.logger.exception("conversation log writer error")
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
            self.logger.warning(
                "conversation log %s unavailable (%s); keeping rows in memory (up to %d) and retrying every %g s",
                self.path,
                self.last_error,
                self.memory_bound,
                self.retry_interval,
            )

    def _leave_outage(self) -> None:
        if self._outage_since is None:
            if self._outage_dropped:  # rows dropped because the writer fell behind, without an outage
                self.logger.error("conversation log: %d rows were dropped over the memory bound", self._outage_dropped)
                self._outage_dropped = 0
            return
        took = time.monotonic() - self._outage_since
        self._outage_since = None
        if self._outage_dropped:
            self.logger.error(
                "conversation log available again after %.1f s; %d rows were dropped over the memory bound",
                took,
                self._outage_dropped,
            )
        else:
            self.logger.warning("conversation log available again after %.1f s; no rows lost", took)
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
            self.logger.warning("conversation log: a batch failed on its data (%s); writing its rows one by one", exc)
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
                self.logger.error("conversation log: dropping row for turn %s: %s", item.turn_id, exc)
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
        for an unknown turn, a turn that could not be prepared)."""
        conn = self._conn
        assert conn is not None
        raw = [i for i in batch if isinstance(i, _RawTurn)]
        feedback = [i for i in batch if isinstance(i, _Feedback)]
        # Under load the event loop is busy answering, and every await here is a trip through it: with the rows
        # prepared on the loop, or one trip per statement, the log fell seconds behind the answers
        # (tests/load/test_signals.py: what a kill -9 loses). So a batch takes two trips: the rows are prepared
        # (masking, HMAC, JSON) on the log's own thread while BEGIN IMMEDIATE waits for the write lock on
        # aiosqlite's; then every statement and the COMMIT are queued on aiosqlite's thread at once.
        prepared = asyncio.get_running_loop().run_in_executor(self._prepare_thread, self._prepare_turns, raw)
        begun = asyncio.ensure_future(conn.execute(BEGIN))
        (turns, failed), _ = await asyncio.gather(prepared, begun)
        unknown, duplicates = await _write_rows(conn, turns, feedback)
        remasked = sum(t.remasked for t in turns)
        self.transactions += 1
        if remasked:
            if not self.remasked:  # a bug upstream: say it once, count the rest
                self.logger.warning("conversation log: personal data found in an already masked question; masked now")
            self.remasked += remasked
        if failed:
            self._prepare_failed(failed)
        if unknown:
            self.dropped += len(unknown)
            self.logger.warning(
                "conversation log: dropped feedback for %d unknown turn id(s): %s",
                len(unknown),
                ", ".join(sorted({f.turn_id[:32] for f in unknown})[:5]),
            )
        if duplicates:
            self.dropped += duplicates
            self.logger.warning("conversation log: %d turn id(s) were already logged; kept the first copy", duplicates)
        return len(unknown) + duplicates + len(failed)

    def _prepare_turns(self, raw: list[_RawTurn]) -> tuple[list[TurnRows], list[tuple[str, str]]]:
        """On a worker thread: the rows of each turn, and (turn id, error) for turns that could not be prepared."""
        turns: list[TurnRows] = []
        failed: list[tuple[str, str]] = []
        for r in raw:
            try:
                turns.append(self._prepare_turn(r))
            except Exception as exc:  # a malformed reply: drop that row, keep the batch
                failed.append((r.turn_id, f"{type(exc).__name__}: {exc}"))
        return turns, failed


async def _write_rows(
    conn: aiosqlite.Connection, turns: list[TurnRows], feedback: list[_Feedback]
) -> tuple[list[_Feedback], int]:
    """Insert prepared turns and feedback in the transaction begun on ``conn`` and commit it; (feedback for unknown
    turns, duplicate turn ids).

    The statements and the COMMIT are queued on aiosqlite's thread at once and run there back to back (aiosqlite
    runs its queue in order; tasks start in the order they are made). Should one fail, the ones after it still run
    before the error is seen here -- the COMMIT too, or after SQLite's own rollback (disk full, I/O error) each
    statement on its own. So every statement is idempotent (conversations and versions INSERT OR IGNORE, turns ON
    CONFLICT DO NOTHING, feedback only once per turn, kind and time): the writer retries the batch, and the retry
    completes what a partial write left."""
    conversations = _insert_statements("conversations", [t.conversation for t in turns])
    versions = [(_VERSION_SQL, v) for v in _versions(turns)]  # one or two versions a batch
    new_turns = _insert_statements("turns", [t.turn for t in turns])
    ids = sorted({f.turn_id for f in feedback})
    known_sql = [(f"SELECT id FROM turns WHERE id IN ({','.join('?' * len(ids))})", ids)] if ids else []
    statements = [
        *conversations,
        *versions,
        *new_turns,
        *((_FEEDBACK_SQL, (f.turn_id, f.kind, f.ts, f.turn_id, f.turn_id, f.kind, f.ts)) for f in feedback),
        *known_sql,  # the ids the log has (this batch's included), to name the others
    ]
    try:
        cursors = await _run_queued(conn, [*statements, (COMMIT, ())])
    except BaseException:
        if conn.in_transaction:
            try:
                await conn.execute(ROLLBACK)
            except sqlite3.Error:
                pass
        raise
    known = {r[0] for r in await cursors[len(statements) - 1].fetchall()} if ids else set()
    first = len(conversations) + len(versions)
    inserted = sum(c.rowcount for c in cursors[first : first + len(new_turns)])
    duplicates = len(turns) - inserted if turns and 0 <= inserted < len(turns) else 0
    return [f for f in feedback if f.turn_id not in known], duplicates


async def _run_queued(conn: aiosqlite.Connection, statements: list[tuple[str, Any]]) -> list[aiosqlite.Cursor]:
    """Queue every statement at once, wait for all; raise the first error after all have run."""
    results = await asyncio.gather(*(conn.execute(sql, params) for sql, params in statements), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results
