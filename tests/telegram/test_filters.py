"""Every handler and filter of the dispatcher runs in the event loop: aiogram sends a plain (sync) callable,
a bare magic filter included, through `asyncio.to_thread` -- a thread hop per check per update."""

from __future__ import annotations

import asyncio
import datetime as dt

from aiogram import F
from aiogram.types import Chat, Message, User

from bot.telegram.app import build_dispatcher
from bot.telegram.filters import inline, question_text
from tests.telegram.harness import make_services, make_settings


def _walk(router):
    yield router
    for sub in router.sub_routers:
        yield from _walk(sub)


async def test_no_handler_or_filter_hops_to_a_thread(tmp_path):
    settings = make_settings(tmp_path, group_auto_answer=True, admin_ids=[42])
    services = await make_services(settings, with_log=False)
    dp = build_dispatcher(services, settings)
    checked = 0
    for router in _walk(dp):
        for observer in router.observers.values():
            for handler in [observer._handler, *observer.handlers]:  # _handler holds the router-level filters
                if handler is not observer._handler:
                    assert handler.awaitable, f"{router.name}.{observer.event_name}: {handler.callback!r} is sync"
                for f in handler.filters or []:
                    assert f.awaitable, f"{router.name}.{observer.event_name}: filter {f.callback!r} runs in a thread"
                    checked += 1
    assert checked >= 20  # the routers' filters were really walked


async def test_inline_magic_gives_the_magic_filters_value(monkeypatch):
    msg = Message(
        message_id=1,
        date=dt.datetime.now(dt.UTC),
        chat=Chat(id=5, type="private"),
        from_user=User(id=7, is_bot=False, first_name="x"),
        text="社保卡",
    )
    photo = Message(message_id=2, date=msg.date, chat=Chat(id=5, type="group"), photo=[])

    def no_threads(*a, **k):  # the check must not leave the loop
        raise AssertionError("asyncio.to_thread called")

    monkeypatch.setattr(asyncio, "to_thread", no_threads)
    assert await inline(F.text)(msg) == "社保卡"
    assert not await inline(F.text)(photo)
    assert await inline((F.chat.type == "private") & F.from_user.id.in_({7}))(msg)
    assert not await inline((F.chat.type == "private") & F.from_user.id.in_({8}))(msg)
    assert not await inline(F.from_user.id.in_({7}))(photo)  # no sender: rejected, not an error
    assert await inline(F.text & ~F.text.startswith("/"))(msg)


async def test_question_text_leaves_commands_to_their_handlers():
    def msg(text):
        return Message(message_id=1, date=dt.datetime.now(dt.UTC), chat=Chat(id=5, type="private"), text=text)

    assert await question_text(msg("社保卡丢了怎么办"))
    assert await question_text(msg("社保卡 /help 是什么"))  # a slash inside a question is still a question
    assert not await question_text(msg("/help"))
    assert not await question_text(msg("  /faq"))  # aiogram parses this as a command too
    assert not await question_text(msg(None))
