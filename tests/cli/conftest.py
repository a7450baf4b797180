"""Fixtures of the command-line tests.

* every test here runs without the bot's settings of the developer's shell (``clean_env``, autouse);
* the review site (`faqbot logs serve`, tests/cli/datasette.py) costs about a second of CPU to start, so the tests
  that do not disturb each other share one server per configuration, for the whole session (per xdist worker):

  - ``served_log``: the fixture log (tests/support/logs.build_log) the shared servers serve; nothing writes to it;
  - ``open_site``: on 127.0.0.1 without a login, on ``served_log``, started from an environment that holds the bot's
    secrets (``SECRETS``, as an operator's shell would); its tests only read;
  - ``locked_site``: with ``--require-password``, on its own copy of the log (``.db``). Only the labelling test
    writes to it (reviews, which no other test of it reads). The login throttle counts failed logins per client
    address: the tests that count them log in from an address of their own (``Client("127.0.0.2")``), and the
    whole session stays far below the throttle's all-clients limit;
  - ``curator``: a client logged in to ``locked_site`` through the login form, once (a password check is 0.1 s of
    PBKDF2), for the tests that act as the logged-in browser.

  A test that writes rows others count, kills its server or needs a server of its own configuration starts its own
  (``Datasette(...)``, then ``stop()``).
"""

from __future__ import annotations

import shutil

import pytest

from tests.cli.datasette import PASSWORD, SECRETS, Client, Datasette, login
from tests.support.env import scrub_environ
from tests.support.logs import FixtureLog, build_log


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    scrub_environ(monkeypatch)


@pytest.fixture(scope="session")
def served_log(tmp_path_factory) -> FixtureLog:
    return build_log(tmp_path_factory.mktemp("served") / "faqbot.db")


@pytest.fixture(scope="session")
def open_site(served_log, tmp_path_factory):
    s = Datasette(served_log.path, tmp_path_factory.mktemp("open-site"), env=SECRETS)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def locked_site(served_log, tmp_path_factory):
    folder = tmp_path_factory.mktemp("locked-site")
    db = folder / "faqbot.db"
    shutil.copy(served_log.path, db)
    s = Datasette(db, folder, "--require-password", password=PASSWORD)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def curator(locked_site) -> Client:
    client = Client()
    status, _, _ = login(locked_site, PASSWORD, client)
    assert status == 200 and client.has_cookie("ds_actor"), status
    return client
