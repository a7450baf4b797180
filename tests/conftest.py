"""Shared, generic fixtures. Keep this small: put feature-specific fixtures in your own test files.

* ``settings``       -- Settings with a database in tmp_path and no LLM / Telegram / Matrix configured.
* ``kb``             -- the built-in knowledge base, loaded once per session (read-only: don't mutate it).
* ``answerer``       -- an offline Answerer (no LLM, no log) on ``kb``, shared by the session: don't reload it
                        or change its settings (build your own ``Answerer(settings, kb)`` for that).
* ``knowledge_copy`` -- a writable copy of ``knowledge/`` in tmp_path (to break or edit).
* ``subprocess_env`` -- os.environ without bot tokens / LLM keys / FAQBOT_* settings, FAQBOT_DB in tmp_path.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KNOWLEDGE_DIR = REPO / "knowledge"
DATA_DIR = Path(__file__).resolve().parent / "data"

# Environment variables a subprocess must not inherit: they would switch on a transport or the LLM, or point the
# bot at another knowledge base / database than the test intends.
_SCRUB_PREFIXES = ("TELEGRAM_", "OPENAI_", "MATRIX_", "FAQBOT_")


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
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env["FAQBOT_DB"] = str(tmp_path / "data" / "faqbot.db")
    env["FAQBOT_HISTORY"] = str(tmp_path / "history")
    env["PYTHONIOENCODING"] = "utf-8"
    return env
