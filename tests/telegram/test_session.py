"""The bot's HTTP session keeps the parsed-answer models alive across garbage collections."""

from __future__ import annotations

import gc

from aiogram.methods import Response
from aiogram.types import Message

from bot.telegram.app import create_bot
from bot.telegram.middlewares import KeepResponseTypes
from tests.fakes.telegram_api import FakeBotAPI
from tests.telegram.harness import make_settings


async def test_response_models_survive_garbage_collection(tmp_path):
    async with FakeBotAPI() as fake:
        bot = create_bot(make_settings(tmp_path, fake))
        try:
            [keeper] = [m for m in bot.session.middleware if isinstance(m, KeepResponseTypes)]
            sent = await bot.send_message(1001, "你好")
            assert isinstance(sent, Message) and sent.text == "你好"
            assert await bot.send_chat_action(1001, "typing") is True
            first = keeper.kept[Message]
            gc.collect()
            # pydantic's cache still answers with the same class: nothing to rebuild on the next answer.
            assert Response[Message] is first
            assert set(keeper.kept) >= {Message, bool}
            again = await bot.send_message(1001, "再见")
            assert again.text == "再见" and keeper.kept[Message] is first
        finally:
            await bot.session.close()
    assert [c.params["text"] for c in fake.calls_to("sendMessage")] == ["你好", "再见"]
