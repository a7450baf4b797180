"""The conversation log's SQLite file locked by another process (``BEGIN EXCLUSIVE``) for 10 s during load.

Real bot (aiogram polling against `FakeBotAPI`, the production `TurnLog`: 5 s busy timeout, 0.5 s retry) and a
subprocess holding the lock. While it is held, 5 waves of 50 users ask a question every 2 s: every wave must be
answered at once (answering never waits for the disk), nothing can be committed meanwhile, and once the lock is
released every turn is in the file. Scaled: 250 questions during the lock (the lock itself is the stated 10 s).
"""

from __future__ import annotations

import asyncio
import time

from tests.fakes.telegram_api import FakeBotAPI
from tests.load.harness import (
    capture_errors,
    check_answers,
    db_rows,
    distinct_questions,
    expected_texts,
    hold_exclusive_lock,
    offline_answerer,
    push_question,
    turn_count,
    turn_ids,
    wait_all_answered,
)

LOCK_SECONDS = 10.0
WAVES = 5
USERS = 50
SPACING = 2.0


async def test_log_locked_by_another_process_for_10_s_during_load(polling):
    questions = distinct_questions(10)
    answerer = offline_answerer()
    expected = {q: expected_texts(answerer.match(q)) for q in questions}
    with capture_errors() as errors:
        async with FakeBotAPI() as fake, polling(fake) as bot:
            log = bot.services.turn_log
            assert log is not None
            warm = [
                push_question(fake, 80_000 + u, questions[u % 10], expected=expected[questions[u % 10]])
                for u in range(USERS)
            ]
            await wait_all_answered(fake, warm, timeout=10)
            await log.flush(timeout=10)
            before = turn_count(bot.db)
            assert before == USERS

            locker = await hold_exclusive_lock(bot.db, LOCK_SECONDS)
            locked_at = time.monotonic()
            released = asyncio.ensure_future(locker.stdout.readline())
            asked = []
            for wave in range(WAVES):
                await asyncio.sleep(max(0.0, locked_at + wave * SPACING - time.monotonic()))  # 0, 2, ... 8 s
                batch = []
                for u in range(USERS):
                    q = questions[(u + wave + 1) % 10]
                    batch.append(push_question(fake, 80_000 + u, q, expected=expected[q]))
                asked += batch
                await wait_all_answered(fake, warm + asked, timeout=1.5)  # answered within 1.5 s, lock or not
                assert not released.done(), "the lock was released before this wave was answered"
            # nothing reached the file while it was locked (readers still work in WAL mode)
            assert turn_count(bot.db) == before
            assert log.pending == len(asked)
            assert await asyncio.wait_for(released, LOCK_SECONDS + 5) == b"released\n"
            assert time.monotonic() - locked_at >= LOCK_SECONDS - 0.5
            await locker.wait()

            await log.flush(timeout=15)  # the writer gets the lock back by itself
            assert log.healthy and log.pending == 0 and log.dropped == 0
            await bot.shutdown()
        got = check_answers(fake, warm + asked)

    rows = dict(db_rows(bot.db, "SELECT id, question FROM turns"))
    assert len(rows) == len(warm) + len(asked)
    for i, a in enumerate(warm + asked):
        [turn] = [t for c in got[i] for t in turn_ids(c)]
        assert rows[turn] == a.question
    assert db_rows(bot.db, "PRAGMA integrity_check") == [("ok",)]
    assert not errors.records, errors.summary()
