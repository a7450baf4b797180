"""Flood limits both ways: retries of refused Bot API calls (429, 502 page, dropped connection) without duplicate
messages, incoming throttling per user, and one answer in the making per user."""

from __future__ import annotations

import asyncio
import time

from bot.answering import texts
from bot.telegram.options import TelegramOptions
from tests.telegram.harness import FAQ_Q, NONE_Q, TEST_OPTIONS, ScriptedFallback, knowledge

USER = 1001


def _opts(**kw) -> TelegramOptions:
    return TelegramOptions(**{**TEST_OPTIONS.__dict__, **kw})


async def test_429_is_retried_after_retry_after_and_one_message_is_delivered(tg):
    async with tg() as env:
        env.fake.fail("sendMessage", status=429, retry_after=1)
        started = time.monotonic()
        await env.ask(FAQ_Q)
        elapsed = time.monotonic() - started
        calls = env.fake.calls_to("sendMessage")
        assert [c.status for c in calls] == [429, 200]
        assert len(env.sent(USER)) == 1  # delivered exactly once
        assert calls[1].ts - calls[0].ts >= 0.95 and elapsed >= 0.95  # waited retry_after
        assert env.tg["inflight"].handled == 1


async def test_retry_after_is_capped(tg):
    async with tg(options=_opts(retry_after_cap=0.2)) as env:
        env.fake.fail("sendMessage", status=429, retry_after=30)
        started = time.monotonic()
        await env.ask(FAQ_Q)
        assert time.monotonic() - started < 2
        assert len(env.sent(USER)) == 1


async def test_502_html_page_then_success(tg):
    async with tg() as env:
        env.fake.fail("sendMessage", status=502, times=2)
        await env.ask(FAQ_Q)
        calls = env.fake.calls_to("sendMessage")
        assert [c.status for c in calls] == [502, 502, 200]
        [answer] = env.sent(USER)
        assert answer.params["text"].startswith(knowledge().get("lost_reissue").question)


async def test_retries_are_bounded(tg):
    async with tg(options=_opts(retry_attempts=2)) as env:
        env.fake.fail("sendMessage", status=500, times=10)
        await env.ask(FAQ_Q)  # never raises out of the dispatcher
        assert len(env.fake.calls_to("sendMessage")) >= 3
        assert env.sent(USER) == []
        assert env.fake.calls_to("sendMessage")[2].status == 500  # 1 try + 2 retries, then the error handler


async def test_a_message_is_not_resent_after_an_ambiguous_failure(tg):
    async with tg() as env:
        # the connection drops mid-request: Telegram may or may not have posted it -> never sent twice
        env.fake.fail("sendMessage", status=0)
        await env.ask(FAQ_Q)
        calls = env.fake.calls_to("sendMessage")
        assert len([c for c in calls if c.failed]) == 1
        assert all(
            not c.params["text"].startswith(knowledge().get("lost_reissue").question) for c in calls[1:]
        )  # no second copy of the answer
        # idempotent calls are retried after the same failure
        await env.ask(FAQ_Q)
        msg = env.sent(USER)[-1]
        env.fake.fail("answerCallbackQuery", status=0)
        toast = await env.press(msg.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"], msg.result)
        assert toast.status == 200
        assert [c.status for c in env.fake.calls_to("answerCallbackQuery")] == [0, 200]


async def test_incoming_flood_gets_one_notice_then_silence(tg):
    async with tg(options=_opts(throttle_rate=3, throttle_period=10, throttle_silence=0.5)) as env:
        for _ in range(6):
            await env.ask(FAQ_Q)
        texts_sent = [c.params["text"] for c in env.sent(USER)]
        assert texts_sent[3] == texts.THROTTLED
        assert len(texts_sent) == 4  # 3 answers, 1 notice, then nothing
        # other users are not affected
        await env.ask(FAQ_Q, user_id=4004)
        assert len(env.sent(4004)) == 1
        # after the silence the user is served again
        await asyncio.sleep(0.6)
        await env.ask(FAQ_Q)
        assert len(env.sent(USER)) == 5 and env.sent(USER)[-1].params["text"] != texts.THROTTLED
        await env.flush()
        assert env.query("SELECT count(*) FROM turns") == [(5,)]


async def test_one_llm_answer_per_user_at_a_time(tg):
    hold = asyncio.Event()
    llm = ScriptedFallback(["正在"], "回答完毕。", delay=0.01, hold=hold)
    async with tg(llm=llm) as env:
        first = asyncio.create_task(env.ask(NONE_Q))
        await asyncio.wait_for(llm.started.wait(), 5)
        await env.ask("那支付宝呢")  # same user, while the first answer is being generated
        assert env.sent(USER)[-1].params["text"] == texts.BUSY_LLM
        other = asyncio.create_task(env.ask(NONE_Q, user_id=5005))  # someone else is not blocked
        await asyncio.sleep(0.1)
        assert env.tg["answer_lock"].busy == {USER, 5005}
        hold.set()
        await asyncio.wait_for(asyncio.gather(first, other), 5)
        assert env.sent(5005)[-1].params["text"] == "回答完毕。"
        finals = [c.params["text"] for c in env.sent(USER)]
        assert finals == [texts.BUSY_LLM, "回答完毕。"]
        assert llm.calls == 2  # the busy question never reached the LLM
        assert env.tg["answer_lock"].busy == set()
        await env.ask(NONE_Q)  # free again
        assert env.sent(USER)[-1].params["text"] == "回答完毕。"


async def test_previews_are_never_retried_and_never_hold_up_the_answer(tg):
    llm = ScriptedFallback([f"预览{i}" for i in range(10)], "最终回答。", delay=0.03)
    async with tg(llm=llm, options=_opts(typing_delay=0.0)) as env:
        env.fake.fail("sendMessageDraft", status=429, retry_after=30)
        env.fake.fail("sendChatAction", status=500, times=10)  # typing is cosmetic
        started = time.monotonic()
        await env.ask(NONE_Q)
        assert time.monotonic() - started < 2
        assert env.sent(USER)[-1].params["text"] == "最终回答。"
        # one refused draft, then previews pause for retry_after instead of retrying or hammering
        assert [c.status for c in env.fake.calls_to("sendMessageDraft")] == [429]
        assert len(env.fake.calls_to("sendChatAction")) == 1  # not retried
        assert not env.fake.calls_to("editMessageText")


async def test_throttle_silence_ends_on_time_and_memory_stays_bounded():
    """The per-user throttle on a clock the test moves: silenced for exactly `silence`, history forgotten after
    `period`, and a crowd of distinct users never grows its maps past `max_users`."""
    from aiogram.types import Update, User

    from bot.telegram.middlewares import ThrottlingMiddleware

    now = [0.0]
    mw = ThrottlingMiddleware(rate=2, period=10, silence=30, clock=lambda: now[0], max_users=100)
    handled: list[tuple[int, float]] = []

    async def handler(event, data):
        handled.append((data["event_from_user"].id, now[0]))

    async def send(uid: int) -> None:
        await mw(handler, Update(update_id=1), {"event_from_user": User(id=uid, is_bot=False, first_name="u")})

    for t in (0, 1, 2):  # the third event within 10 s is one too many
        now[0] = t
        await send(1)
    assert handled == [(1, 0), (1, 1)] and mw.dropped == 1
    now[0] = 31.9  # silenced until 2 + 30
    await send(1)
    assert len(handled) == 2 and mw.dropped == 2
    now[0] = 32.0
    await send(1)
    assert handled[-1] == (1, 32.0)
    now[0] = 50.0  # the earlier events are forgotten: two more pass
    await send(1)
    await send(1)
    assert [t for _, t in handled] == [0, 1, 32.0, 50.0, 50.0]
    for uid in range(1000, 1500):
        await send(uid)
    assert len(handled) == 505 and len(mw._hits) <= 100 and len(mw._silenced) <= 100
