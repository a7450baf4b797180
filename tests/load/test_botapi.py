"""The Telegram Bot API refusing messages under load: 502 (an nginx error page) and 429 (flood control) bursts.

Real bot (aiogram polling, the adapter's retrying request middleware with the production retry settings:
3 retries, 0.5 s backoff doubling, `retry_after` honoured) against `FakeBotAPI`. 100 users (one in five in a
group of its own) each ask 5 questions, one wave of 100 questions every 1.6 s; as each wave is pushed, the
next 30 sendMessage calls fail, alternately with 502 and with 429 retry_after=1. Every question must be answered
exactly once (a failed call plus its one successful retry; never two successes), in the order asked per chat,
and every turn logged. Scaled from 200 x 10 to 100 x 5 to keep the file near 10 s: waves are spaced so that the
retries of one burst are not eaten by the next one (with 3 retries a request would need 4 failures in a row).
"""

from __future__ import annotations

import asyncio
import dataclasses

from tests.fakes.telegram_api import Call, FakeBotAPI
from tests.load.harness import (
    LOAD_OPTIONS,
    capture_errors,
    check_answers,
    db_rows,
    distinct_questions,
    expected_texts,
    offline_answerer,
    push_question,
    wait_all_answered,
)

USERS = 100
WAVES = 5
BURST = 30
SPACING = 1.6
# the production retry settings (TEST_OPTIONS shortens the backoff to 0.05 s)
OPTIONS = dataclasses.replace(LOAD_OPTIONS, retry_attempts=3, retry_backoff=0.5, retry_after_cap=30.0)


def _retry_of(failed: Call, calls: list[Call]) -> Call:
    """The successful sendMessage that delivered what ``failed`` could not (same chat, same text)."""
    for c in calls:
        if (
            c.ts > failed.ts
            and c.status == 200
            and c.params.get("chat_id") == failed.params.get("chat_id")
            and c.params.get("text") == failed.params.get("text")
        ):
            return c
    raise AssertionError(
        f"the message refused with {failed.status} in chat {failed.params.get('chat_id')} was never delivered"
    )


async def test_bot_api_502_and_429_bursts_during_load(polling):
    questions = distinct_questions(WAVES)
    answerer = offline_answerer()
    expected = {q: expected_texts(answerer.match(q)) for q in questions}
    with capture_errors() as errors:
        async with FakeBotAPI() as fake, polling(fake, options=OPTIONS) as bot:
            asked = []
            for wave in range(WAVES):
                if wave:
                    await asyncio.sleep(SPACING)
                if wave % 2 == 0:
                    fake.fail("sendMessage", status=502, times=BURST)
                else:
                    fake.fail("sendMessage", status=429, retry_after=1, times=BURST)
                for u in range(USERS):
                    q = questions[(u + wave) % WAVES]
                    asked.append(push_question(fake, 70_000 + u, q, group=u % 5 == 4, expected=expected[q]))
            await wait_all_answered(fake, asked, timeout=30)
            await bot.shutdown()
        check_answers(fake, asked)  # exactly one successful sendMessage per question, in order per chat
        assert fake.updates == []

    calls = fake.calls_to("sendMessage")
    failed = [c for c in calls if c.failed]
    assert sorted(c.status for c in failed) == [429] * (BURST * (WAVES // 2)) + [502] * (BURST * ((WAVES + 1) // 2))
    for c in failed:  # each refused message was sent again, after the wait Telegram asked for
        retry = _retry_of(c, calls)
        assert retry.ts - c.ts >= (0.95 if c.status == 429 else 0.45), (c.status, retry.ts - c.ts)
    assert len(calls) == len(asked) + len(failed)  # nothing else was sent: no duplicate, no notice
    assert db_rows(bot.db, "SELECT count(*) FROM turns")[0][0] == USERS * WAVES
    assert not errors.records, errors.summary()
