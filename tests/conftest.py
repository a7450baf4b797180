"""Repo-wide fixtures; each folder's own harness is in its conftest.py (tests/cli, tests/load, tests/matrix,
tests/telegram), helpers without state in tests/support/.

* ``settings``       -- Settings with a database in tmp_path and no LLM / Telegram / Matrix configured.
* ``kb``             -- the built-in knowledge base, loaded once per session (read-only: don't mutate it).
* ``answerer``       -- an offline Answerer (no LLM, no log) on ``kb``, shared by the session: don't reload it
                        or change its settings (build your own ``Answerer(settings, kb)`` for that).
* ``knowledge_copy`` -- a writable copy of ``knowledge/`` in tmp_path (to break or edit).
* ``subprocess_env`` -- os.environ without bot tokens / LLM keys / FAQBOT_* settings, FAQBOT_DB in tmp_path.
* ``clean_env``      -- the same scrubbing for this process (in-process CLI and settings tests), undone afterwards.
* ``main_env``       -- ``subprocess_env`` for this process, working folder ``tmp_path``, undone afterwards: what an
                        in-process ``faqbot_main`` run (tests/support/cli.py) needs to see what a ``faqbot`` child sees.
* ``faqbot``         -- ``faqbot(*args, stdin=..., env=..., cwd=...)``: the real command in a subprocess
                        (tests/support/cli.py), by default with ``subprocess_env`` in ``tmp_path``.
* ``port``           -- a free TCP port on 127.0.0.1 (tests/support/ports.py).

``-n auto`` (pyproject.toml) gives a run pytest-xdist workers, one per core (at most 4), only when its ``-m`` leaves out
the ``load`` and ``synapse`` tests (the quick loop); any other run is serial (tests/support/workers.py).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.support.cli import faqbot as run_faqbot
from tests.support.env import clean_environ, scrub_environ
from tests.support.ports import free_port
from tests.support.workers import selects_system_tests

# Cache compiled modules (git ignores __pycache__) even where PYTHONDONTWRITEBYTECODE is set, as on these machines:
# otherwise every pytest worker rewrites every test module's asserts again, and each of the ~100 `faqbot` child
# processes of the quick loop compiles the project from source again (they read what the workers wrote). Measured
# on the 2-core machine: quick loop 67 s -> 58 s wall, 106 s -> 88 s CPU.
sys.dont_write_bytecode = False

REPO = Path(__file__).resolve().parents[1]
KNOWLEDGE_DIR = REPO / "knowledge"
DATA_DIR = Path(__file__).resolve().parent / "data"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    # None: xdist's own count (one per core). xdist's `--dist loadgroup` could have kept these tests together on one
    # worker, but under pytest 9.2 its groups are not applied (it rewrites `item._nodeid`, which pytest no longer
    # reads: pytest-dev/pytest-xdist#1386), so a run that may select them gets no workers at all.
    return 0 if selects_system_tests(config.getoption("markexpr")) else None


def _offline_settings(db: Path):
    from bot.app.settings import Settings

    return Settings(
        db=db,
        knowledge_dir=KNOWLEDGE_DIR,
        openai_api_key=None,
        openai_base_url=None,
        telegram_bot_token=None,
        matrix_homeserver=None,
        transports=[],
    )


@pytest.fixture
def settings(tmp_path):
    return _offline_settings(tmp_path / "faqbot.db")


@pytest.fixture(scope="session")
def kb():
    from knowledge.loader import load_knowledge

    return load_knowledge(KNOWLEDGE_DIR)


@pytest.fixture(scope="session")
def answerer(kb, tmp_path_factory):
    from bot.answering.answerer import Answerer

    return Answerer(_offline_settings(tmp_path_factory.mktemp("answerer") / "faqbot.db"), kb)


@pytest.fixture
def knowledge_copy(tmp_path) -> Path:
    dest = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE_DIR, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return dest


@pytest.fixture
def subprocess_env(tmp_path) -> dict[str, str]:
    env = clean_environ()
    env["FAQBOT_DB"] = str(tmp_path / "data" / "faqbot.db")
    env["FAQBOT_HISTORY"] = str(tmp_path / "history")
    env["PYTHONIOENCODING"] = "utf-8"
    return env


@pytest.fixture
def clean_env(monkeypatch) -> None:
    scrub_environ(monkeypatch)


@pytest.fixture
def main_env(monkeypatch, subprocess_env, tmp_path) -> dict[str, str]:
    scrub_environ(monkeypatch)
    for name in ("FAQBOT_DB", "FAQBOT_HISTORY"):
        monkeypatch.setenv(name, subprocess_env[name])
    monkeypatch.chdir(tmp_path)  # `.env` is read from the working folder, as the child's was tmp_path
    return subprocess_env


@pytest.fixture
def faqbot(subprocess_env, tmp_path):
    def run(*args, env=None, cwd=None, **kw):
        return run_faqbot(*args, env=subprocess_env if env is None else env, cwd=tmp_path if cwd is None else cwd, **kw)

    return run


@pytest.fixture
def port() -> int:
    return free_port()
