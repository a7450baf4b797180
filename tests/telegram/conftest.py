"""Fixtures of the Telegram adapter tests (the harness itself is tests/telegram/harness.py).

* ``tg(**settings)`` -- ``async with tg(admin_ids=[...]) as env:``: a FakeBotAPI, the adapter's real Bot and
  Dispatcher, the real answering core and a SQLite log in the test's tmp_path (``harness.tg_env``); keywords as
  there (``llm=``, ``kb=``, ``options=``, ``fake_kw=``, Settings fields).
"""

from __future__ import annotations

import functools

import pytest

from tests.telegram.harness import tg_env


@pytest.fixture
def tg(tmp_path):
    return functools.partial(tg_env, tmp_path)
