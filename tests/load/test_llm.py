"""The LLM server failing under load: 5xx / 429 bursts, hanging (before and during the stream), and the server
process killed with SIGKILL in the middle of its streams, then restarted.

Real bot (aiogram polling against `FakeBotAPI`, real LLM fallback and guard, SQLite log) and the real `openai`
client against `FakeOpenAI` (in-process when scripted, in a process of its own when it is killed). Each wave is
40 users asking a question that goes to the LLM, at once, while 40 other users ask curated questions in groups.
Every LLM user must get exactly one message: the verified answer or the safe fallback, within the time budget
(`llm_budget` 2 s here) plus 1 s of slack for the queueing of 80 answers on a 2-core machine, plus what the slowest
curated answer of the same wave waited (the machine's own delay at that moment); the curated answers must not wait
for the LLM. Scaled: 40+40 users per wave instead of hundreds, to keep the file under ~20 s.
The circuit breaker is set out of reach, so every request meets its fault (the worst case for latency).

Last, a fresh process checks that the first LLM question of the bot's life does not block the event loop.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from bot.answering import texts
from tests.fakes.openai_server import Behaviour, FakeOpenAI, _Ctx, hang, reply, status
from tests.fakes.telegram_api import FakeBotAPI
from tests.load.harness import (
    LLM_GOOD,
    LLM_Q,
    ROOT,
    Asked,
    answers_so_far,
    capture_errors,
    db_rows,
    distinct_questions,
    expected_texts,
    llm_outcome,
    llm_settings,
    offline_answerer,
    push_question,
    start_llm_process,
    wait_all_answered,
)

LLM_USERS = 40
CURATED_USERS = 40
BUDGET = 2.0
SLACK = 1.0


class StallMidStream(Behaviour):
    """Starts streaming, sends ``after`` pieces of text, then goes silent (the connection stays open)."""

    def __init__(self, after: int = 3, seconds: float = 30.0) -> None:
        self.after = after
        self.seconds = seconds

    async def respond(self, ctx: _Ctx):
        resp = await ctx.start_stream()
        await ctx.send_event(resp, ctx.chunk({"role": "assistant", "content": ""}))
        for piece in ["可以在", "河北人社", "APP"][: self.after]:
            await ctx.send_event(resp, ctx.chunk({"content": piece}))
        await ctx.server._sleep(self.seconds)
        return resp


class Wave:
    """One wave of load: LLM questions in private chats, curated questions in groups, all pushed at once."""

    def __init__(self, fake: FakeBotAPI, first_user: int) -> None:
        answerer = offline_answerer()
        questions = distinct_questions(10, curated_only=True)
        expected = {q: expected_texts(answerer.match(q)) for q in questions}
        # (everything computed before the first push: the test shares the bot's event loop)
        self.llm: list[Asked] = [push_question(fake, first_user + i, LLM_Q) for i in range(LLM_USERS)]
        self.curated: list[Asked] = []
        for i in range(CURATED_USERS):
            q = questions[i % len(questions)]
            self.curated.append(push_question(fake, first_user + LLM_USERS + i, q, group=True, expected=expected[q]))
        self.fake = fake

    async def finish(self, timeout: float = 15.0) -> dict[str, int]:
        """Wait for every answer; check them; return how many LLM users got each outcome."""
        await wait_all_answered(self.fake, self.llm + self.curated, timeout)
        return self.check()

    def check(self) -> dict[str, int]:
        got = answers_so_far(self.fake, self.llm)
        outcomes: dict[str, int] = {}
        worst = 0.0
        for i, a in enumerate(self.llm):
            calls = got[i]
            assert len(calls) == 1, f"user {a.user}: {len(calls)} messages"
            [call] = calls
            kind = llm_outcome(call.params.get("text"))
            assert kind != "other", call.params.get("text")
            outcomes[kind] = outcomes.get(kind, 0) + 1
            worst = max(worst, call.ts - a.pushed)
        curated = check_answers_subset(self.fake, self.curated)
        slowest = max(c[0].ts - a.pushed for a, c in zip(self.curated, curated, strict=False))
        assert slowest < BUDGET, f"a curated answer waited {slowest:.2f} s behind the LLM"
        # The budget bounds the LLM's part; getting the update and sending the answer take what they take on the
        # machine right now -- as long as the slowest curated answer of the same wave took, at most (a starved
        # machine made a 2 s budget + 1 s slack fail by 0.1 s with three suites running). A budget not enforced
        # would show as the server's hang (30 s here) or the client's timeout.
        assert worst <= BUDGET + SLACK + slowest, (
            f"an LLM user waited {worst:.2f} s (budget {BUDGET} s, slowest curated answer {slowest:.2f} s)"
        )
        # nobody got a second message (a busy notice, a duplicate, the error text)
        for a in self.llm:
            texts_sent = self.fake.sent_texts(a.chat_id)
            assert len(texts_sent) == 1 and texts.BUSY_LLM not in texts_sent and texts.ERROR not in texts_sent
        outcomes["worst_ms"] = int(worst * 1000)
        return outcomes


def check_answers_subset(fake: FakeBotAPI, asked: list[Asked]) -> list[list]:
    got = answers_so_far(fake, asked)
    for i, a in enumerate(asked):
        assert [c.params.get("text") for c in got[i]] == a.expected, a.question
    return [got[i] for i in range(len(asked))]


def llm_rows(db) -> list[tuple[str | None, str | None]]:
    return db_rows(db, "SELECT error, guard FROM turns WHERE route = 'llm'")


async def test_llm_5xx_429_bursts_and_hangs_during_load(polling):
    good = reply(LLM_GOOD, chunks=10)
    with capture_errors() as errors:
        async with FakeOpenAI(default=good) as llm, FakeBotAPI() as fake:
            async with polling(fake, **llm_settings(llm.base_url, llm_budget=BUDGET)) as bot:
                # Wave 1, a short burst: the first request of every user fails (5xx, or 429 with Retry-After),
                # the retries succeed -> everyone gets the verified answer.
                llm.script(*[status(500), status(503), status(502), status(429, retry_after=0.2)] * (LLM_USERS // 4))
                one = await Wave(fake, 20_000).finish()
                assert one.get("verified") == LLM_USERS, one
                assert llm.pending == 0 and len(llm.calls) == 2 * LLM_USERS

                # Wave 2, an outage: every request fails (429s first, then 503s) -> the fallback for everyone.
                llm.script(*[status(429, retry_after=0.2)] * LLM_USERS)
                llm.default = status(503)
                two = await Wave(fake, 30_000).finish()
                assert two.get("fallback") == LLM_USERS, two

                # Wave 3: the server hangs, before sending anything or after a few pieces of text.
                llm.script(*[hang(30), StallMidStream()] * (LLM_USERS // 2))
                llm.default = hang(30)
                three = await Wave(fake, 40_000).finish()
                assert three.get("fallback") == LLM_USERS, three
                llm.default = good
                await bot.shutdown()

            rows = llm_rows(bot.db)
            assert len(rows) == 3 * LLM_USERS
            assert sum(1 for error, _ in rows if error) == 2 * LLM_USERS
            kinds = {error.split(":")[0] for error, _ in rows if error}
            assert kinds <= {"server-error", "rate-limit", "budget", "timeout"}, kinds
            assert {guard for error, guard in rows if not error} == {"pass"}
            assert db_rows(bot.db, "SELECT count(*) FROM turns")[0][0] == 3 * (LLM_USERS + CURATED_USERS)
    assert not errors.records, errors.summary()
    print(f"\nshort 5xx/429 burst: {one}; outage: {two}; hanging: {three}")


async def test_llm_server_killed_mid_stream_during_load(polling):
    proc, port = await start_llm_process(chunk_delay=0.1)  # 1.5 s per answer: the kill finds them streaming
    try:
        with capture_errors() as errors:
            async with FakeBotAPI() as fake:
                settings = llm_settings(f"http://127.0.0.1:{port}", llm_budget=BUDGET)
                async with polling(fake, **settings) as bot:
                    # Wave 1: the answers stream slowly; kill -9 the server once previews are showing.
                    wave = Wave(fake, 40_000)
                    await fake.wait_for("sendMessageDraft", count=LLM_USERS // 2, timeout=10)
                    proc.send_signal(signal.SIGKILL)
                    await proc.wait()
                    one = await wave.finish()
                    assert one.get("fallback", 0) >= LLM_USERS // 2, one  # the cut streams are not retried
                    # the previews that were showing are replaced by the fallback, never kept as the answer
                    assert all(
                        llm_outcome(t) == "fallback"
                        for a in wave.llm
                        for t in fake.sent_texts(a.chat_id)
                        if any(c.params.get("chat_id") == a.chat_id for c in fake.calls_to("sendMessageDraft"))
                    )

                    # Wave 2: the server is gone (connection refused): the fallback at once, for everyone.
                    two = await Wave(fake, 50_000).finish()
                    assert two.get("fallback") == LLM_USERS, two

                    # Wave 3: the server is back on the same port (answering in 0.45 s): verified answers again.
                    # Forty streams at once can outlast the 2 s budget on a busy 2-core machine (seen: 12 of 40 with
                    # two suites running), so an answer may be the budget fallback; what must not happen is a
                    # request that no longer reaches the restarted server (checked on the log below).
                    proc, _ = await start_llm_process(port, chunk_delay=0.03)
                    three = await Wave(fake, 60_000).finish()
                    assert three.get("verified", 0) >= 1, three
                    await bot.shutdown()
                wave_three = db_rows(
                    bot.db, "SELECT error FROM turns WHERE route = 'llm' ORDER BY id DESC LIMIT ?", LLM_USERS
                )
                # ("budget: no time left to retry after connection: …" is a connection failure too)
                assert not [e for (e,) in wave_three if e and "connection" in e.lower()], wave_three
                assert {e.split(":")[0] for (e,) in wave_three if e} <= {"budget", "timeout"}, wave_three
                rows = llm_rows(bot.db)
                assert len(rows) == 3 * LLM_USERS
                kinds = {error.split(":")[0] for error, _ in rows if error}
                assert kinds <= {"connection", "budget", "timeout"}, kinds
        assert not errors.records, errors.summary()
        print(f"\nkilled mid-stream: {one}; server down: {two}; restarted: {three}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


LAG_PROBE = """
import asyncio, sys, time
sys.path.insert(0, sys.argv[1])
from bot.app.settings import Settings
from bot.answering.types import Conversation
from bot.app.services import build_services
from tests.fakes.openai_server import FakeOpenAI, reply

async def main():
    async with FakeOpenAI(default=reply(sys.argv[3])) as llm:
        settings = Settings(_env_file=None, db=sys.argv[2], secret="lag-probe-secret", openai_base_url=llm.base_url + "/v1", llm_mode="generate")
        services = await build_services(settings)  # start-up: may take its time
        worst = 0.0
        async def probe():
            nonlocal worst
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.005)
                worst = max(worst, time.perf_counter() - t - 0.005)
        task = asyncio.create_task(probe())
        await asyncio.sleep(0.05)
        final = await services.answerer.answer(sys.argv[4], Conversation("telegram", "1", "private", "1"))
        task.cancel()
        await services.aclose()
        print(final.route.value, final.guard, round(worst, 3), len(llm.calls))

asyncio.run(main())
"""


async def test_the_first_llm_question_does_not_stall_the_bot(tmp_path):
    """In a fresh process: while the first question of the bot's life goes to the LLM, the event loop (every other
    chat) is never blocked for long. It was blocked ~1 s: the openai package was imported on first use."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LAG_PROBE,
        str(ROOT),
        str(tmp_path / "lag.db"),
        LLM_GOOD,
        LLM_Q,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    route, guard, worst, calls = out.decode().split()
    assert (route, guard, calls) == ("llm", "pass", "1")
    assert float(worst) < 0.4, f"the event loop was blocked for {float(worst):.2f} s during the first LLM question"
