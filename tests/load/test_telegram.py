"""Load through the real Telegram path: 200 simulated users x 10 messages at once.

The bot is the production wiring (`build_services` + `run_telegram` with aiogram long polling) against the
loopback `FakeBotAPI`, logging to a real SQLite file. Not scaled down: 2,000 messages, all pushed before the bot
has answered the first (about 10-15 s on the 2-core test machine).

Throttle: the production per-user throttle (5 messages / 10 s) would answer 5 of each user's 10 messages and drop
the rest by design, so this test raises it (`LOAD_OPTIONS`); everything else uses the test defaults.
"""

from __future__ import annotations

import time

from tests.fakes.telegram_api import FakeBotAPI
from tests.load.harness import (
    capture_errors,
    check_answers,
    db_rows,
    distinct_questions,
    expected_texts,
    offline_answerer,
    push_question,
    turn_ids,
)

USERS = 200
MESSAGES = 10
FIRST_USER = 10_000


async def test_200_users_x_10_messages_at_once(polling):
    questions = distinct_questions(MESSAGES)
    answerer = offline_answerer()
    expected = {q: expected_texts(answerer.match(q)) for q in questions}
    with capture_errors() as errors:
        async with FakeBotAPI() as fake, polling(fake) as bot:
            asked = []
            started = time.monotonic()
            for n in range(MESSAGES):  # message n of every user, then message n+1 ...: users interleave
                for u in range(USERS):
                    q = questions[(u + n) % MESSAGES]
                    # one user in five asks in a group of its own (the answer replies to the question)
                    asked.append(push_question(fake, FIRST_USER + u, q, group=u % 5 == 4, expected=expected[q]))
            total = sum(len(a.expected) for a in asked)
            await bot.wait_answered(total, timeout=75)
            took = time.monotonic() - started
            await bot.shutdown()
            got = check_answers(fake, asked)  # exactly once, expected texts, per-chat order
            assert fake.updates == []  # every update confirmed
            handled = bot.services.turn_log
        assert handled is not None and handled.pending == 0 and handled.dropped == 0
        print(f"\n{len(asked)} messages answered in {took:.1f} s ({len(asked) / took:.0f} msg/s)")

    # every turn logged, once, and each answer's 👍/👎 buttons name the turn that logged it
    rows = dict(db_rows(bot.db, "SELECT id, question FROM turns"))
    assert len(rows) == len(asked) == USERS * MESSAGES
    assert db_rows(bot.db, "SELECT count(*) FROM conversations")[0][0] == USERS
    for i, a in enumerate(asked):
        ids = [t for c in got[i] for t in turn_ids(c)]
        assert len(ids) == 1, (a.question, ids)
        assert rows[ids[0]] == a.question
    assert not errors.records, errors.summary()
