"""Shared harness for the system-level load and fault tests (``tests/load/test_*.py``).

Everything is real except the two remote services, which are the loopback fakes: the bot runs with the adapter's
own ``run_telegram`` (real aiogram long polling against `FakeBotAPI`), the production wiring of
``build_services`` (answering core, the SQLite `TurnLog` on a temporary file, the LLM fallback against
`FakeOpenAI` when a base URL is given), and ``faqbot run`` as a subprocess for the signal tests.

How answers are matched to questions
    Each simulated user sits in its own chat. In a group the bot answers with a reply to the question, so
    each answer names the message id it answers. In a private chat there is no reply marker; instead every user
    asks questions whose expected answers are pairwise different (`distinct_questions`), so the texts received
    in the chat, in order, must equal the expected texts of the questions, in the order asked. Both checks
    prove "answered exactly once" and "per-chat order kept" for every single message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiogram.client.telegram import TelegramAPIServer

from bot.answering.answerer import Answerer
from bot.answering.types import Reply, Route
from bot.app.services import Services, build_services
from bot.app.settings import Settings
from bot.telegram.app import run_telegram
from bot.telegram.keyboards import FeedbackCB
from bot.telegram.options import TelegramOptions
from bot.telegram.render import reply_texts
from tests.fakes.telegram_api import Call, FakeBotAPI, LoopbackSession
from tests.support.env import clean_environ
from tests.telegram.harness import SECRET, TEST_OPTIONS, knowledge

ROOT = Path(__file__).resolve().parents[2]

# The incoming per-user throttle (5 messages / 10 s in production) would drop 5 of every 10 messages a user sends
# at once, by design. The in-process load tests raise it so that the load reaches the answering path; the
# throttle itself is covered by tests/telegram/test_flood.py. The subprocess tests keep the production options and
# send at most 2 messages per user instead.
LOAD_OPTIONS = dataclasses.replace(TEST_OPTIONS, throttle_rate=1_000_000, drain_timeout=30.0)

NONE_Q = "今天天气怎么样"  # out of scope (LLM off) -> the out-of-scope text
CLARIFY_Q = "电子社保卡"  # -> clarify
LLM_Q = "我想在手机上弄个社保卡，去哪儿搞"  # matcher: none; retrieval finds "apply" -> goes to the LLM
LLM_GOOD_BODY = "可以在河北人社APP、微信或支付宝申领电子社保卡，登录后按提示输入本人身份信息并人脸识别即可。"
LLM_GOOD = LLM_GOOD_BODY + "[来源: apply]"  # passes the grounding guard


# ------------------------------------------------------------------------------------------------ questions
def offline_answerer() -> Answerer:
    """The answering core without LLM or log: what the bot must answer to each question (LLM off)."""
    return Answerer(Settings(_env_file=None), knowledge())


def expected_texts(reply: Reply) -> list[str]:
    """The texts of the messages the adapter sends for ``reply`` (split to fit, as `send_texts` does)."""
    return [part.as_kwargs()["text"] for part in reply_texts(reply)]


def distinct_questions(n: int = 10, *, curated_only: bool = False) -> list[str]:
    """``n`` questions whose answers (LLM off) are pairwise different: curated answers, clarify, out of scope.

    ``curated_only``: only questions answered from the FAQ directly (with the LLM on, the others go to it).
    """
    answerer = offline_answerer()
    out: list[str] = []
    seen: set[str] = set()
    for q in ([] if curated_only else [CLARIFY_Q, NONE_Q]) + [e.question for e in knowledge().entries]:
        reply = answerer.match(q)
        if reply.route is Route.FAQ and reply.faq_id is None or (curated_only and reply.route is not Route.FAQ):
            continue
        key = "\x00".join(expected_texts(reply))
        if key in seen:
            continue
        seen.add(key)
        out.append(q)
        if len(out) == n:
            return out
    raise AssertionError(f"only {len(out)} questions with distinct answers in the knowledge")


# ------------------------------------------------------------------------------------------------ users
@dataclass
class Asked:
    """One question a simulated user sent."""

    user: int
    chat_id: int
    group: bool
    message_id: int
    update_id: int
    question: str
    pushed: float  # time.monotonic() when it was handed to the fake
    expected: list[str] = field(default_factory=list)  # message texts that answer it (LLM off)


def user_chat(user: int, group: bool) -> int:
    """Each simulated user has a chat of its own: the private chat, or a supergroup where only it asks."""
    return -1_002_000_000_000 - user if group else user


def push_question(
    fake: FakeBotAPI, user: int, question: str, *, group: bool = False, expected: list[str] | None = None
) -> Asked:
    """Queue a message from ``user`` in its chat (groups: addressed with an @mention) for getUpdates."""
    chat_id = user_chat(user, group)
    text = f"@{fake.username} {question}" if group else question
    update = fake.message_update(text, user_id=user, chat_id=chat_id, chat_type="supergroup" if group else "private")
    fake.push_update(update)
    return Asked(
        user,
        chat_id,
        group,
        update["message"]["message_id"],
        update["update_id"],
        question,
        time.monotonic(),
        list(expected or []),
    )


def successes(fake: FakeBotAPI, method: str = "sendMessage") -> list[Call]:
    return [c for c in fake.calls_to(method) if not c.failed and c.status == 200]


def answered(fake: FakeBotAPI, *, since: int = 0) -> int:
    """Successful sendMessage calls recorded so far (``since``: skip the first calls of the log)."""
    return sum(1 for c in fake.calls[since:] if c.method == "sendMessage" and c.status == 200)


async def wait_answered(fake: FakeBotAPI, count: int, timeout: float, *, since: int = 0) -> None:
    """Wait until ``count`` sendMessage calls have succeeded (polls: a call's status is set after it arrives)."""
    deadline = time.monotonic() + timeout
    while answered(fake, since=since) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{answered(fake, since=since)} of {count} answers after {timeout} s")
        await asyncio.sleep(0.02)


def reply_to(call: Call) -> int | None:
    params = call.params.get("reply_parameters")
    return params.get("message_id") if isinstance(params, dict) else None


def turn_ids(call: Call) -> list[str]:
    """Turn ids named by the 👍 / 👎 buttons under a sent answer (one per answer that can be rated)."""
    markup = call.params.get("reply_markup") or {}
    out = []
    for row in markup.get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data") or ""
            if data.startswith(FeedbackCB.__prefix__ + ":"):
                cb = FeedbackCB.unpack(data)
                if cb.kind == "up":
                    out.append(cb.turn)
    return out


def match_answers(fake: FakeBotAPI, asked: list[Asked]) -> dict[int, list[Call]]:
    """Successful sendMessage calls per question (key: index in ``asked``), checking per-chat order.

    Groups: by the replied-to message id. Private chats: the chat's messages in order, cut by the expected
    number of parts of each question (`check_private_chats` then compares the texts).
    """
    sent = successes(fake)
    by_chat: dict[int, list[Call]] = {}
    for c in sent:
        by_chat.setdefault(c.params.get("chat_id"), []).append(c)
    out: dict[int, list[Call]] = {i: [] for i in range(len(asked))}
    by_message = {(a.chat_id, a.message_id): i for i, a in enumerate(asked)}
    private: dict[int, list[int]] = {}
    for i, a in enumerate(asked):
        if not a.group:
            private.setdefault(a.chat_id, []).append(i)
    chats = {a.chat_id for a in asked}
    for chat_id, calls in by_chat.items():
        if chat_id not in chats:  # not a chat these questions were asked in
            continue
        if chat_id in private:
            pos = 0
            for i in private[chat_id]:
                n = max(1, len(asked[i].expected))
                out[i] = calls[pos : pos + n]
                pos += n
            extra = calls[pos:]
            assert not extra, (
                f"chat {chat_id}: {len(extra)} message(s) more than questions asked: "
                f"{[c.params.get('text', '')[:30] for c in extra]}"
            )
        else:
            for c in calls:
                key = (chat_id, reply_to(c))
                assert key in by_message, f"an answer in chat {chat_id} replies to an unknown message {key[1]}"
                out[by_message[key]].append(c)
    return out


def check_answers(fake: FakeBotAPI, asked: list[Asked]) -> dict[int, list[Call]]:
    """Every question answered exactly once with its expected texts, in the order asked in each chat."""
    got = match_answers(fake, asked)
    problems = []
    last_in_chat: dict[int, tuple[float, int]] = {}
    for i, a in enumerate(asked):
        texts_got = [c.params.get("text") for c in got[i]]
        if texts_got != a.expected:
            problems.append(
                f"user {a.user} ({'group' if a.group else 'private'}) asked {a.question!r}: "
                f"expected {[t[:20] for t in a.expected]}, got {[str(t)[:20] for t in texts_got]}"
            )
            continue
        first = got[i][0].ts
        prev = last_in_chat.get(a.chat_id)
        if prev is not None and first < prev[0]:
            problems.append(
                f"chat {a.chat_id}: the answer to message {a.message_id} arrived before the answer to message {prev[1]}"
            )
        last_in_chat[a.chat_id] = (got[i][-1].ts, a.message_id)
    assert not problems, f"{len(problems)} question(s) not answered right, e.g.:\n" + "\n".join(problems[:10])
    return got


# ------------------------------------------------------------------------------------------------ logging
class ErrorRecords(logging.Handler):
    """Collects ERROR (and worse) log records from every logger: unhandled exceptions in handlers (aiogram and
    our error router log them), 'Task exception was never retrieved' (asyncio), writer bugs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def summary(self) -> str:
        return "\n".join(f"{r.name}: {r.getMessage()}" for r in self.records[:10])


@contextlib.contextmanager
def capture_errors() -> Iterator[ErrorRecords]:
    handler = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


# ------------------------------------------------------------------------------------------------ the bot
def load_settings(tmp_path: Path, fake: FakeBotAPI, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        db=tmp_path / "faqbot.db",
        secret=SECRET.decode(),
        telegram_bot_token=fake.token,
        telegram_api_url=fake.base_url,
        openai_base_url=None,
        openai_api_key=None,
        transports=[],
        matrix_homeserver=None,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class PollingBot:
    fake: FakeBotAPI
    settings: Settings
    services: Services
    stop: asyncio.Event
    task: asyncio.Task[None]

    @property
    def db(self) -> Path:
        return self.settings.db

    async def wait_answered(self, count: int, timeout: float) -> None:
        await wait_answered(self.fake, count, timeout)

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Stop polling, wait for the answers in flight, drain the log (what SIGTERM does in `faqbot run`)."""
        self.stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        finally:
            await self.services.aclose()


@contextlib.asynccontextmanager
async def polling_bot(
    tmp_path: Path, fake: FakeBotAPI, *, options: TelegramOptions = LOAD_OPTIONS, **settings_kw: Any
) -> AsyncIterator[PollingBot]:
    """The real bot (`build_services` + `run_telegram`, long polling) on ``fake``, until the block ends."""
    settings = load_settings(tmp_path, fake, **settings_kw)
    services = await build_services(settings)
    stop = asyncio.Event()
    session = LoopbackSession(api=TelegramAPIServer.from_base(fake.base_url))
    task = asyncio.create_task(
        run_telegram(services, settings, stop, options=options, session=session), name="bot-under-load"
    )
    bot = PollingBot(fake, settings, services, stop, task)
    try:
        await fake.wait_for("getUpdates", timeout=15)
        yield bot
    finally:
        if not task.done():
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
        await services.aclose()
    # (only when the block itself succeeded: a failing test's own error is the one to see)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # the bot itself failed


# ------------------------------------------------------------------------------------------------ the database
def db_rows(path: Path, sql: str, *params: Any) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def turn_count(path: Path) -> int:
    return db_rows(path, "SELECT count(*) FROM turns")[0][0]


class CommittedTurns:
    """Polls the log with a second, read-only connection and remembers every turn id it has seen committed
    (and when). A turn seen here is acknowledged by the database: another connection could read it."""

    def __init__(self, path: Path, interval: float = 0.02) -> None:
        self.path = path
        self.interval = interval
        self.seen: dict[str, float] = {}
        self.polls = 0
        self._task: asyncio.Task[None] | None = None

    def _poll(self) -> list[str]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1)
        try:
            return [r[0] for r in conn.execute("SELECT id FROM turns")]
        except sqlite3.OperationalError:  # not migrated yet, or busy
            return []
        finally:
            conn.close()

    async def _run(self) -> None:
        while True:
            ids = await asyncio.to_thread(self._poll)
            now = time.monotonic()
            for t in ids:
                self.seen.setdefault(t, now)
            self.polls += 1
            await asyncio.sleep(self.interval)

    def start(self) -> CommittedTurns:
        self._task = asyncio.create_task(self._run(), name="committed-turns")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
print("released", flush=True)
"""


async def hold_exclusive_lock(path: Path, seconds: float) -> asyncio.subprocess.Process:
    """Another process takes ``BEGIN EXCLUSIVE`` on ``path`` for ``seconds``; returns once it holds the lock."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOCKER, str(path), str(seconds), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 15)
    assert line.strip() == b"locked", line
    return proc


# ------------------------------------------------------------------------------------------------ faqbot run
def faqbot_env(tmp_path: Path, fake: FakeBotAPI, **extra: str) -> dict[str, str]:
    """Environment for ``python -m bot run`` against ``fake``: no inherited bot/LLM settings."""
    env = clean_environ()
    env.update(
        TELEGRAM_BOT_TOKEN=fake.token,
        TELEGRAM_API_URL=fake.base_url,
        FAQBOT_DB=str(tmp_path / "run.db"),
        FAQBOT_SECRET=SECRET.decode(),
        FAQBOT_LOG_LEVEL="INFO",
        PYTHONIOENCODING="utf-8",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    env.update(extra)
    return env


async def start_faqbot(tmp_path: Path, fake: FakeBotAPI, **extra: str) -> asyncio.subprocess.Process:
    """``python -m bot run`` as a subprocess (stderr to a file in tmp_path); returns once it polls."""
    err = open(tmp_path / "faqbot.stderr", "wb")  # noqa: SIM115 - closed with the process by the caller
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=tmp_path,
        env=faqbot_env(tmp_path, fake, **extra),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=err,
    )
    err.close()
    try:
        await fake.wait_for("getUpdates", timeout=60)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc


def stderr_of(tmp_path: Path) -> str:
    path = tmp_path / "faqbot.stderr"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def delivered_update_ids(fake: FakeBotAPI) -> set[int]:
    """Update ids the fake handed to the bot in getUpdates answers."""
    out: set[int] = set()
    for c in fake.calls_to("getUpdates"):
        if c.status == 200 and isinstance(c.result, list):
            out.update(u["update_id"] for u in c.result)
    return out


# ------------------------------------------------------------------------------------------------ the LLM
def llm_settings(base_url: str, **overrides: Any) -> dict[str, Any]:
    """Settings for the LLM fallback against a loopback server, with a small time budget.

    The circuit breaker is set out of reach so that every request meets the injected fault (the worst case for
    latency; the breaker itself is tested in tests/llm/test_fallback.py).
    """
    values: dict[str, Any] = dict(
        openai_base_url=base_url.rstrip("/") + "/v1",
        openai_model="load-model",
        llm_mode="generate",
        llm_timeout=0.5,
        llm_budget=2.0,
        llm_max_retries=2,
        llm_breaker_failures=1_000_000,
        llm_breaker_cooldown=1.0,
    )
    values.update(overrides)
    return values


def llm_outcome(text: str | None) -> str:
    """'verified' (the grounded answer the fake model gave), 'fallback' (the safe fallback) or 'other'."""
    from bot.answering import texts

    if text and text.startswith(LLM_GOOD_BODY) and "来源" not in text:
        return "verified"
    if text and text.startswith(texts.LLM_FALLBACK):
        return "fallback"
    return "other"


FAKE_LLM_PROCESS = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from tests.fakes.openai_server import FakeOpenAI, reply

async def main(port, text, delay):
    async with FakeOpenAI(default=reply(text, chunks=15, chunk_delay=delay), port=port) as server:
        print(server.port, flush=True)
        await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[2]), sys.argv[3], float(sys.argv[4])))
"""


async def start_llm_process(port: int = 0, chunk_delay: float = 0.03) -> tuple[asyncio.subprocess.Process, int]:
    """`FakeOpenAI` in a process of its own (so it can be killed with SIGKILL), streaming `LLM_GOOD` in 15 chunks
    ``chunk_delay`` seconds apart. Returns the process and its port."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FAKE_LLM_PROCESS,
        str(ROOT),
        str(port),
        LLM_GOOD,
        str(chunk_delay),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip().isdigit(), line
    return proc, int(line)


def answers_so_far(fake: FakeBotAPI, asked: list[Asked]) -> dict[int, list[Call]]:
    """Like `match_answers`, without the checks (for waiting).

    Private chats have no reply marker: ``asked`` must hold every question asked in those chats, in order
    (pass the whole history, not only the last wave, when users ask again).
    """
    sent = successes(fake)
    want = {(a.chat_id, a.message_id): i for i, a in enumerate(asked) if a.group}
    private = {}
    for i, a in enumerate(asked):
        if not a.group:
            private.setdefault(a.chat_id, []).append(i)
    out: dict[int, list[Call]] = {i: [] for i in range(len(asked))}
    queues: dict[int, list[Call]] = {}
    for c in sent:
        chat = c.params.get("chat_id")
        if chat in private:
            queues.setdefault(chat, []).append(c)
        elif (chat, reply_to(c)) in want:
            out[want[(chat, reply_to(c))]].append(c)
    for chat, idx in private.items():
        calls = queues.get(chat, [])
        pos = 0
        for i in idx:
            n = max(1, len(asked[i].expected))
            out[i] = calls[pos : pos + n]
            pos += n
    return out


async def wait_all_answered(fake: FakeBotAPI, asked: list[Asked], timeout: float) -> None:
    """Wait until every question in ``asked`` has all its answer messages (one when none are expected).

    ``asked``: every question asked so far in the private chats concerned (see `answers_so_far`)."""
    deadline = time.monotonic() + timeout
    while True:
        got = answers_so_far(fake, asked)
        missing = [i for i, a in enumerate(asked) if len(got[i]) < max(1, len(a.expected))]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(missing)} of {len(asked)} questions unanswered after {timeout} s, e.g. "
                f"{[asked[i].question for i in missing[:3]]}"
            )
        await asyncio.sleep(0.02)
