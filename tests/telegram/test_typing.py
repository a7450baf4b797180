"""The typing indicator against the fake Bot API with a real aiogram Bot: only for slow answers, repeated
while the answer runs, silent afterwards, and never in the way of the answer."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.telegram.answering import TypingIndicator
from tests.fakes.telegram_api import FakeBotAPI


@pytest.fixture
async def tg():
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def bot(tg: FakeBotAPI):
    b = tg.make_bot()
    yield b
    await b.session.close()


async def test_a_quick_answer_shows_no_typing(tg, bot):
    async with TypingIndicator(bot, 1001, None, delay=0.1):
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # the timer would have fired by now
    assert tg.calls_to("sendChatAction") == []


async def test_a_slow_answer_shows_typing_repeatedly_then_stops(tg, bot):
    async with TypingIndicator(bot, 1001, 7, delay=0.05, interval=0.1):
        await asyncio.sleep(0.5)
    calls = tg.calls_to("sendChatAction")
    assert 3 <= len(calls) <= 6
    assert {(c.params["chat_id"], c.params["action"], c.params.get("message_thread_id")) for c in calls} == {
        (1001, "typing", 7)
    }
    await asyncio.sleep(0.3)
    assert len(tg.calls_to("sendChatAction")) == len(calls)  # nothing after the answer


async def test_an_action_in_flight_is_finished_before_the_answer_goes(tg, bot):
    tg.set_delay("sendChatAction", 0.3)
    t0 = time.monotonic()
    async with TypingIndicator(bot, 1001, None, delay=0.0):
        await asyncio.sleep(0.05)
    assert time.monotonic() - t0 >= 0.29  # waited for the action, so it cannot land after the answer
    [call] = tg.calls_to("sendChatAction")
    assert call.status == 200


async def test_a_failing_action_never_reaches_the_answer(tg, bot):
    tg.fail("sendChatAction", status=500, times=10)
    async with TypingIndicator(bot, 1001, None, delay=0.0, interval=0.05):
        await asyncio.sleep(0.2)
    assert tg.calls_to("sendChatAction")  # tried, failed, and the block ended normally
    assert all(c.failed for c in tg.calls_to("sendChatAction"))
