"""TurnLog: batching, privacy, outages (locked / unavailable database) and crash safety, on real SQLite files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.answering.privacy import id_check_digit, luhn_ok, mask_pii, pseudonymize
from bot.answering.types import Candidate, Conversation, Reply, Route
from storage.db import open_db
from storage.rows import conversation_key, prepare_turn
from storage.trace import KNOWLEDGE_VERSION_SQL, LLM_RAW_SQL, decode_candidates
from storage.transactions import BEGIN
from storage.writer import TurnLog, _Feedback, _write_rows

SECRET = b"test-secret-for-hmac"
CHILD = Path(__file__).parent / "writer_child.py"
REPO = Path(__file__).resolve().parents[2]

RAW_ID = "11010519491231002" + id_check_digit("11010519491231002")
RAW_PHONE = "13912345678"
RAW_BANK = next(f"622202123456789{d}" for d in "0123456789" if luhn_ok(f"622202123456789{d}"))
RAW_USER_IDS = ["5550001", "5550002", "5550003"]
GROUP_CHAT = "-100777888999"


def _reply(i: int, *, question: str | None = None, route: Route = Route.FAQ, **kw) -> Reply:
    fields = dict(
        route=route,
        text=f"答案{i}：请在掌上12333申领电子社保卡。",
        question=question if question is not None else f"电子社保卡怎么申领 {i}",
        normalized=f"电子社保卡怎么申领{i}",
        faq_id="q01" if route is Route.FAQ else None,
        section=1 if route is Route.FAQ else None,
        score=80.0 + i % 20,
        candidates=[
            Candidate("q01", 1, 80.0 + i % 20, "电子社保卡怎么申领？"),
            Candidate("q02", 2, 40.0, "怎么激活？"),
        ],
        turn_id=f"t{i:05d}",
        latency_ms=float(i % 50),
        knowledge_version="kv1",
    )
    fields.update(kw)
    return Reply(**fields)


def _logger(name: str) -> logging.Logger:
    return logging.getLogger(f"test.turnlog.{name}")


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def _count(path: Path, table: str = "turns") -> int:
    conn = _db(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def _warnings(caplog, name: str, needle: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.endswith(name) and needle in r.getMessage()]


# ---------------------------------------------------------------------------------------------------- batching


async def test_batches_privacy_and_exact_rows(tmp_path):
    path = tmp_path / "log.db"
    log = TurnLog(path, secret=SECRET, logger=_logger("batch"))
    await log.start()
    convs = [
        Conversation("telegram", RAW_USER_IDS[0], "private", RAW_USER_IDS[0]),
        Conversation("telegram", GROUP_CHAT, "supergroup", RAW_USER_IDS[1]),
        Conversation("console", "console", "console", RAW_USER_IDS[2]),
    ]
    sent: dict[str, tuple[Conversation, Reply, str]] = {}
    for i in range(500):
        kind = i % 4
        if kind == 0:  # upstream forgot to mask: the writer must catch it
            raw_q = f"我的身份证{RAW_ID}，手机{RAW_PHONE}，卡号{RAW_BANK}，电子社保卡怎么申领"
            reply = _reply(i, question=raw_q, normalized=raw_q)
        elif kind == 1:  # already masked upstream, with counts
            m = mask_pii(f"身份证{RAW_ID} 怎么激活")
            reply = _reply(i, question=m.text, masked=dict(m.counts))
        elif kind == 2:  # LLM fallback trace with personal data in the raw model output
            reply = _reply(
                i,
                route=Route.LLM,
                context_ids=["q03", "q04"],
                model="test-model",
                # every other LLM turn: the raw output is the answer (stored once, storage.trace)
                llm_raw=f"答案{i}：请在掌上12333申领电子社保卡。"
                if i % 8 == 6
                else f"用户手机{RAW_PHONE}：请拨打12333",
                guard="fail: ungrounded" if i % 8 == 2 else "pass",
            )
        else:
            reply = _reply(i, route=Route.CLARIFY, error="timeout" if i % 8 == 3 else None, via="button")
        conv = convs[i % 3]
        log.record_turn(conv, reply)
        sent[reply.turn_id] = (conv, reply, mask_pii(reply.question).text)
    log.record_feedback("t00001", "up")
    log.record_feedback("t00002", "down")
    log.record_feedback("t00003", "none")
    assert log.pending == 503
    await log.close()
    await log.close()  # idempotent

    assert log.pending == 0
    assert log.committed == 503
    assert log.dropped == 0
    assert 3 <= log.transactions <= 6, log.transactions  # 500 rows in batches of <= 200, not 500 commits
    assert log.remasked == 125  # every unmasked question was caught (and reported once, counted always)

    conn = _db(path)
    rows = {
        r["id"]: r
        for r in conn.execute(
            f"SELECT t.*, {KNOWLEDGE_VERSION_SQL} AS knowledge_version, {LLM_RAW_SQL} AS llm_raw_read FROM turns t"
        )
    }
    assert set(rows) == set(sent)
    for tid, (conv, reply, masked_q) in sent.items():
        r = rows[tid]
        assert r["question"] == masked_q
        assert r["normalized"] == mask_pii(reply.normalized).text
        assert r["answer"] == reply.text
        assert r["route"] == reply.route.value
        assert r["faq_id"] == reply.faq_id and r["section"] == reply.section
        assert r["score"] == pytest.approx(reply.score)
        # Compact: [faq_id, section, score] without keys or the entry's question (storage.trace)
        assert json.loads(r["candidates"]) == [[c.faq_id, c.section, round(c.score, 1)] for c in reply.candidates]
        assert decode_candidates(r["candidates"]) == [
            {"faq_id": c.faq_id, "section": c.section, "score": round(c.score, 1)} for c in reply.candidates
        ]
        assert json.loads(r["context_ids"]) == reply.context_ids
        assert r["model"] == reply.model and r["guard"] == reply.guard and r["error"] == reply.error
        assert r["llm_raw_read"] == (None if reply.llm_raw is None else mask_pii(reply.llm_raw).text)
        assert r["llm_raw"] == ("" if reply.llm_raw == reply.text else r["llm_raw_read"])
        assert r["latency_ms"] == round(reply.latency_ms)
        assert r["knowledge_version"] == "kv1" and r["via"] == reply.via and r["channel"] == conv.channel
        assert r["ts"].endswith("Z") and len(r["ts"]) == 24
    assert [v for (v,) in conn.execute("SELECT version FROM knowledge_versions")] == ["kv1"]
    assert sum(r["llm_raw"] == "" for r in rows.values()) == 500 // 8
    # masked counts: upstream counts for pre-masked questions, found-again counts for the raw ones
    assert (rows["t00000"]["masked_id"], rows["t00000"]["masked_phone"], rows["t00000"]["masked_bank"]) == (1, 1, 1)
    assert (rows["t00001"]["masked_id"], rows["t00001"]["masked_phone"], rows["t00001"]["masked_bank"]) == (1, 0, 0)
    assert rows["t00002"]["masked_id"] == 0
    fb = conn.execute("SELECT turn_id, kind FROM feedback ORDER BY id").fetchall()
    assert [tuple(r) for r in fb] == [("t00001", "up"), ("t00002", "down"), ("t00003", "none")]

    # Users appear only as the HMAC; a private chat id too; a group chat id as it is.
    convs_db = {r["channel"] + "|" + (r["chat_type"] or ""): r for r in conn.execute("SELECT * FROM conversations")}
    assert len(convs_db) == 3
    private = convs_db["telegram|private"]
    assert private["user_hash"] == pseudonymize(RAW_USER_IDS[0], SECRET)
    assert private["chat_id"] == pseudonymize(RAW_USER_IDS[0], SECRET)
    group = convs_db["telegram|supergroup"]
    assert group["chat_id"] == GROUP_CHAT and group["user_hash"] == pseudonymize(RAW_USER_IDS[1], SECRET)
    console = convs_db["console|console"]
    assert console["chat_id"] == pseudonymize("console", SECRET)
    assert private["key"] == conversation_key("telegram", private["chat_id"], private["user_hash"])
    assert (
        private["key"] == hashlib.sha256(f"telegram|{private['chat_id']}|{private['user_hash']}".encode()).hexdigest()
    )
    turns_per_conv = conn.execute("SELECT count(*) FROM turns GROUP BY conversation_id").fetchall()
    assert sorted(r[0] for r in turns_per_conv) == [166, 167, 167]

    # No raw personal number or user id in any text column of any table (FTS shadow tables included) ...
    forbidden = [RAW_ID, RAW_PHONE, RAW_BANK, *RAW_USER_IDS]
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for row in conn.execute(f'SELECT * FROM "{table}"'):
            for value in tuple(row):
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                for raw in forbidden:
                    assert raw not in text, (table, raw)
    conn.close()
    # ... nor anywhere in the file bytes (the WAL was checkpointed into it on close).
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("log.db"))
    for raw in forbidden:
        assert raw.encode() not in blob


async def test_feedback_order_unknown_turn_and_bad_input(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    path = tmp_path / "log.db"
    log = TurnLog(path, secret=SECRET, logger=_logger("fb"))
    await log.start()
    conv = Conversation("matrix", "!room:example.org", "group", "@alice:example.org")
    with pytest.raises(ValueError):
        log.record_feedback("t00001", "meh")
    log.record_feedback("t09999", "down")  # never logged turn
    log.record_turn(conv, _reply(1))
    log.record_feedback("t00001", "up")  # same batch as its turn: written after it
    log.record_turn(conv, None)  # type: ignore[arg-type]  # a caller bug: logged and dropped, never raised
    await log.flush(timeout=5)
    log.record_turn(conv, _reply(2))
    log.record_feedback("t00002", "none")
    log.record_feedback("t00001", "down")
    await log.flush(timeout=5)
    assert log.healthy and log.pending == 0
    assert log.dropped == 2  # the unknown-turn feedback and the broken turn
    assert len(_warnings(caplog, "fb", "unknown turn")) == 1
    await log.close()
    log.record_turn(conv, _reply(3))  # after close: dropped, not raised
    assert log.dropped == 3

    conn = _db(path)
    assert [tuple(r) for r in conn.execute("SELECT turn_id, kind FROM feedback ORDER BY id")] == [
        ("t00001", "up"),
        ("t00002", "none"),
        ("t00001", "down"),
    ]
    assert _count(path) == 2
    conv_row = conn.execute("SELECT chat_id, user_hash FROM conversations").fetchone()
    assert conv_row["chat_id"] == "!room:example.org"  # a group room id is not personal
    assert conv_row["user_hash"] == pseudonymize("@alice:example.org", SECRET)
    conn.close()


# ---------------------------------------------------------------------------------------------------- outages

_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("INSERT INTO reviews (turn_id, ts) SELECT id, 'x' FROM turns LIMIT 0")
print("locked", flush=True)
sys.stdin.readline()  # held until the test releases it
conn.execute("COMMIT")
"""


async def _hold_lock(path: Path) -> asyncio.subprocess.Process:
    """Another process holding the log's write lock until ``_release`` (not for a fixed time: what the test
    asserts about the locked period is read while the lock is certainly held, however slow the machine)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _LOCKER, str(path), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    assert line.strip() == b"locked"
    return proc


async def _release(proc: asyncio.subprocess.Process) -> None:
    proc.stdin.write(b"release\n")
    await proc.stdin.drain()
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 10) == 0


async def _record_for(log: TurnLog, conv: Conversation, start: int, seconds: float) -> list[float]:
    """Record a turn every ~10 ms for ``seconds``; return how long each record_turn call took (s)."""
    took, i = [], start
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply = _reply(i)
        t0 = time.perf_counter()
        log.record_turn(conv, reply)
        took.append(time.perf_counter() - t0)
        i += 1
        await asyncio.sleep(0.01)
    return took


def _assert_never_blocked(took: list[float]) -> None:
    # A call that waited on the database would take as long as the lock is held (1.5-3 s) or the busy timeout. Each
    # call is an append, well under a millisecond; on a starved 2-core machine a call can still be descheduled for
    # tens of milliseconds (GIL hand-off to the writer's threads, other processes), so the bounds are far from both.
    took = sorted(took)
    assert took[len(took) // 2] < 0.005, f"median record_turn {took[len(took) // 2] * 1000:.2f} ms"
    assert took[-1] < 0.5, f"record_turn blocked for {took[-1] * 1000:.1f} ms"


@pytest.mark.load
async def test_locked_by_another_process_never_blocks_caller(tmp_path):
    path = tmp_path / "log.db"
    log = TurnLog(path, secret=SECRET, logger=_logger("lock"))
    await log.start()
    conv = Conversation("telegram", "42", "private", "42")
    log.record_turn(conv, _reply(0))
    await log.flush(timeout=5)

    proc = await _hold_lock(path)
    committed_before = log.committed
    took = await _record_for(log, conv, 1, 3.0)
    # Nothing could be committed while the other process held the lock (bar a batch begun just before it).
    committed_while_locked = log.committed - committed_before
    await _release(proc)
    n = len(took)
    assert n > 100
    _assert_never_blocked(took)
    assert committed_while_locked <= 5
    await log.flush(timeout=10)
    assert log.pending == 0 and log.healthy
    await log.close()
    assert _count(path) == n + 1


@pytest.mark.load
async def test_locked_longer_than_busy_timeout_recovers(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = tmp_path / "log.db"
    log = TurnLog(path, secret=SECRET, logger=_logger("longlock"), busy_timeout=0.2, retry_interval=0.1)
    await log.start()
    conv = Conversation("telegram", GROUP_CHAT, "group", "7")
    proc = await _hold_lock(path)
    took = await _record_for(log, conv, 0, 1.5)
    await _release(proc)
    n = len(took)
    _assert_never_blocked(took)
    assert log.failures >= 3 and "locked" in (log.last_error or "")
    await log.flush(timeout=10)
    assert log.healthy and log.pending == 0
    outage = _warnings(caplog, "longlock", "unavailable")
    assert len(outage) == 1 and "database is locked" in outage[0].getMessage()  # once per outage, with the reason
    assert len(_warnings(caplog, "longlock", "available again")) == 1
    await log.close()
    assert _count(path) == n


async def test_unavailable_path_keeps_rows_then_recovers(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")  # the log's folder cannot be created: every open fails
    path = blocker / "log.db"
    log = TurnLog(path, secret=SECRET, logger=_logger("path"), retry_interval=0.05, memory_bound=30)
    await log.start()  # does not raise: the bot keeps answering
    assert not log.healthy
    conv = Conversation("telegram", "1", "private", "1")
    t0 = time.perf_counter()
    for i in range(40):
        log.record_turn(conv, _reply(i))
    assert time.perf_counter() - t0 < 0.2
    await asyncio.sleep(0.4)  # several retries
    assert log.pending == 30 and log.dropped == 10  # bounded: the oldest were dropped
    assert log.failures >= 4 and log.last_error
    assert len(_warnings(caplog, "path", "unavailable")) == 1
    assert len([r for r in caplog.records if r.name.endswith("path") and r.levelno == logging.ERROR]) == 1
    with pytest.raises(TimeoutError):
        await log.flush(timeout=0.1)

    blocker.unlink()  # the disk is back
    await log.flush(timeout=5)
    assert log.healthy and log.pending == 0
    assert len(_warnings(caplog, "path", "available again")) == 1
    await log.close()
    conn = _db(path)
    assert [r[0] for r in conn.execute("SELECT id FROM turns ORDER BY id")] == [f"t{i:05d}" for i in range(10, 40)]
    conn.close()


async def test_idle_writer_notices_the_database_is_back(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    log = TurnLog(blocker / "log.db", secret=SECRET, logger=_logger("idle"), retry_interval=0.05)
    await log.start()
    await asyncio.sleep(0.2)
    assert not log.healthy and log.failures >= 3  # probing while idle ...
    assert len(_warnings(caplog, "idle", "unavailable")) == 1  # ... without repeating the warning
    blocker.unlink()
    for _ in range(100):
        if log.healthy:
            break
        await asyncio.sleep(0.02)
    assert log.healthy  # recovered with no row recorded
    await log.close()
    assert (blocker / "log.db").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes; the unavailable-path test covers recovery")
async def test_read_only_file_keeps_rows_then_recovers(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    folder = tmp_path / "ro"
    path = folder / "log.db"
    first = TurnLog(path, secret=SECRET)
    await first.start()
    await first.close()
    path.chmod(0o444)
    folder.chmod(0o555)
    log = TurnLog(path, secret=SECRET, logger=_logger("ro"), retry_interval=0.05)
    try:
        await log.start()
        conv = Conversation("telegram", "1", "private", "1")
        for i in range(20):
            log.record_turn(conv, _reply(i))
        await asyncio.sleep(0.4)
        assert log.pending == 20 and not log.healthy
        assert len(_warnings(caplog, "ro", "unavailable")) == 1
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    await log.flush(timeout=5)
    await log.close()
    assert _count(path) == 20


# ---------------------------------------------------------------------------------------------------- kill -9


@pytest.mark.load
def test_kill_9_loses_only_unacknowledged_rows(tmp_path):
    path = tmp_path / "log.db"
    rng = random.Random(1234)
    acknowledged: list[str] = []
    for run in range(4):
        proc = subprocess.Popen([sys.executable, str(CHILD), str(path), f"r{run}"], stdout=subprocess.PIPE, cwd=REPO)
        want = rng.randint(5, 60)
        got = 0
        while got < want:
            line = proc.stdout.readline()
            assert line, f"writer child exited early with {proc.wait()}"
            acknowledged.append(line.decode().strip())
            got += 1
        time.sleep(rng.uniform(0, 0.03))  # kill at a random moment, usually mid-batch
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()  # lines printed before the kill were acknowledged too
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        acknowledged += [x.decode().strip() for x in rest.splitlines(keepends=True) if x.endswith(b"\n")]

    conn = _db(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.execute("INSERT INTO turns_fts (turns_fts, rank) VALUES ('integrity-check', 1)")
    stored = {r[0] for r in conn.execute("SELECT id FROM turns")}
    missing = [t for t in acknowledged if t not in stored]
    assert not missing, f"{len(missing)} acknowledged turns lost, e.g. {missing[:3]}"
    assert len(acknowledged) == len(set(acknowledged))
    assert {t.split("-")[0] for t in stored} == {"r0", "r1", "r2", "r3"}
    # feedback written with its turns, never dangling
    assert conn.execute("SELECT count(*) FROM feedback WHERE turn_id NOT IN (SELECT id FROM turns)").fetchone()[0] == 0
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


async def test_a_turn_that_cannot_be_prepared_is_dropped_without_stalling_flush(tmp_path, caplog):
    """Rows are prepared (masked, pseudonymized, JSON) by the writer task: a bad one is dropped and counted, flush()
    still returns, and the turns around it are stored."""
    log = TurnLog(tmp_path / "log.db", secret=b"s", flush_interval=0.01)
    await log.start()
    conv = Conversation("cli", "c", "cli", "u")
    good1 = Reply(route=Route.FAQ, text="好", question="社保卡丢了")
    bad = Reply(route=Route.NONE, text="x", question="q", candidates=[object()])  # not serializable
    good2 = Reply(route=Route.NONE, text="y", question="退休年龄")
    with caplog.at_level(logging.ERROR, logger="faqbot"):
        for r in (good1, bad, good2):
            log.record_turn(conv, r)
        await asyncio.wait_for(log.flush(), 5)
    await log.close()
    assert log.dropped == 1 and log.committed == 2
    db = sqlite3.connect(tmp_path / "log.db")
    ids = {row[0] for row in db.execute("SELECT id FROM turns")}
    assert ids == {good1.turn_id, good2.turn_id}
    assert "could not prepare" in caplog.text


@pytest.mark.parametrize(
    "tricky",
    [
        ["引号\"和'单引号' \\反斜杠\\u0000 \n换行\t制表\u2028😀", "普通问题", '{"像": ["JSON"]}'],
        ["含\x00空字符", "普通问题"],
    ],
    ids=["text", "nul"],
)
async def test_a_batch_stores_exactly_what_single_rows_store(tmp_path, tricky):
    # Batches go in as multi-row INSERTs (storage/writer.py); 36 rows span two statements. A batch must store the
    # same values with the same SQLite types as rows written one at a time, whatever the text holds.
    convs = [Conversation("telegram", "-1001", "supergroup", "42"), Conversation("console", "console", "console", "")]

    def replies(prefix: str) -> list[Reply]:
        return [
            _reply(
                i,
                question=q,
                normalized=q,
                turn_id=f"{prefix}{i:04d}",
                score=80.00000000000001 + i,
                latency_ms=0.1 * i,
                route=[Route.FAQ, Route.LLM][i % 2],
                model=None if i % 2 == 0 else "m",
                context_ids=[] if i % 2 == 0 else ["q01"],
                llm_raw=None if i % 2 == 0 else q,
            )
            for i, q in enumerate(tricky * 12)
        ]

    batched, single = tmp_path / "batched.db", tmp_path / "single.db"
    log = TurnLog(batched, secret=SECRET, logger=_logger("bulk"))
    await log.start()
    for i, r in enumerate(replies("b")):
        log.record_turn(convs[i % 2], r)
    await log.close()
    n = len(tricky) * 12
    assert log.transactions == 1 and log.committed == n

    log = TurnLog(single, secret=SECRET, logger=_logger("single"))
    await log.start()
    for i, r in enumerate(replies("s")):
        log.record_turn(convs[i % 2], r)
        await log.flush()
    await log.close()
    assert log.transactions == n and log.committed == n

    def dump(path: Path) -> list[tuple]:
        conn = _db(path)
        try:
            cols = [r[1] for r in conn.execute("PRAGMA table_info(turns)") if r[1] not in ("id", "ts", "latency_ms")]
            sel = ", ".join(f"{c}, typeof({c})" for c in cols)
            rows = [tuple(r) for r in conn.execute(f"SELECT {sel} FROM turns ORDER BY id")]
            convs_ = [
                tuple(r)
                for r in conn.execute(
                    "SELECT key, channel, chat_id, typeof(chat_id), chat_type, "
                    "user_hash FROM conversations ORDER BY key"
                )
            ]
            return rows + convs_
        finally:
            conn.close()

    assert dump(batched) == dump(single)
    conn = _db(batched)
    try:
        questions = [r[0] for r in conn.execute("SELECT question FROM turns ORDER BY rowid")]
        assert questions == [mask_pii(q).text for q in tricky * 12]  # nothing cut at a NUL, order kept
        assert tuple(conn.execute("SELECT typeof(score), typeof(section) FROM turns LIMIT 1").fetchone()) == (
            "real",
            "integer",
        )
    finally:
        conn.close()


async def test_pseudonyms_are_cached_bounded_and_agree_across_threads(tmp_path):
    """The log's thread (preparing rows) and the event loop (ownership checks) share one bounded HMAC cache."""
    log = TurnLog(tmp_path / "p.db", secret=b"k" * 32)
    loop = asyncio.get_running_loop()
    values = [str(i) for i in range(10_050)]
    on_thread = await loop.run_in_executor(None, lambda: [log.pseudonym(v) for v in values])
    assert [log.pseudonym(v) for v in values] == on_thread
    assert on_thread[42] == pseudonymize("42", b"k" * 32)
    assert log._pseudonym.cache_info().currsize == 10_000  # the least recently used 50 are gone


async def test_a_retried_batch_completes_it_without_counting_anything_twice(tmp_path):
    """The writer queues a batch's statements at once, so after a failure some may have run (and been committed)
    before the retry: every statement is idempotent. Writing the same prepared batch twice stores it once."""
    path = tmp_path / "log.db"
    turns = [
        prepare_turn(
            Reply(
                route=Route.FAQ,
                text="答",
                question=f"问题{i}",
                normalized=f"问题{i}",
                faq_id="apply",
                section=1,
                score=90.0,
                turn_id=f"t{i}",
                knowledge_version="kv",
            ),
            when=1_767_225_600.0 + i,
            channel="cli",
            chat_id=1,
            chat_type="cli",
            user_id=1,
            pseudonym=lambda v: pseudonymize(v, b"s" * 32),
        )
        for i in range(3)
    ]
    feedback = [
        _Feedback(0, "t1", "up", "2026-01-01T00:00:01.000Z"),
        _Feedback(0, "nope", "up", "2026-01-01T00:00:01.000Z"),
    ]
    conn = await open_db(path)
    try:
        for attempt in range(2):
            await conn.execute(BEGIN)
            unknown, duplicates = await _write_rows(conn, turns, feedback)
            assert [f.turn_id for f in unknown] == ["nope"]
            assert duplicates == (0 if attempt == 0 else 3)
            assert not conn.in_transaction
    finally:
        await conn.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM turns").fetchone()[0] == 3
        assert db.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1
        assert db.execute("SELECT turn_id, kind FROM feedback").fetchall() == [("t1", "up")]
