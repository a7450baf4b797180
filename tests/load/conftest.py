"""The load and fault tests: every test in this folder carries the ``load`` marker (``pytest -m "not load"`` skips
them in the quick loop; ``make test`` runs them)."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's hook sees the whole session's items: mark only this folder's.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.load)
