"""Loopback test servers (real HTTP on 127.0.0.1, driven by the real client libraries).

* :class:`tests.fakes.telegram_api.FakeBotAPI` -- Telegram Bot API for a real ``aiogram.Bot``.
* :class:`tests.fakes.openai_server.FakeOpenAI` -- OpenAI-compatible ``/v1/chat/completions`` for a real
  ``openai.AsyncOpenAI``.

See each module's docstring for usage.
"""
