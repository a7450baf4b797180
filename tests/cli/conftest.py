"""Fixtures of the command-line tests.

* every test here runs without the bot's settings of the developer's shell (``clean_env``, autouse);
* ``serve(db, *args, env=..., password=...)`` -- a real `faqbot logs serve` (tests/cli/datasette.py) on a free
  loopback port; every server a test started is stopped after it (and its Datasette child must go too).
"""

from __future__ import annotations

import pytest

from tests.cli.datasette import Datasette
from tests.support.env import scrub_environ


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    scrub_environ(monkeypatch)


@pytest.fixture
def serve(tmp_path):
    servers: list[Datasette] = []

    def start(db, *args: str, env=None, password=None) -> Datasette:
        s = Datasette(db, tmp_path, *args, env=env, password=password)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
