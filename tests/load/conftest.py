"""Fixtures of the load and fault tests (the harness itself is tests/load/harness.py).

Every test in this folder carries the ``load`` marker: ``pytest -m "not load"`` leaves them out of the quick loop,
``make test`` runs them.

* ``polling(fake, **settings)`` -- ``async with polling(fake) as bot:``: the real bot long-polling ``fake`` with a
  SQLite log in the test's tmp_path until the block ends (``harness.polling_bot``; ``options=`` and Settings
  fields as there).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tests.load.harness import polling_bot

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's hook sees the whole session's items: mark only this folder's.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.load)


@pytest.fixture
def polling(tmp_path):
    return functools.partial(polling_bot, tmp_path)
