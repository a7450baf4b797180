"""pytest fixtures for the Matrix tests (pytest finds them here; nothing to import).

* ``synapse``  -- a real Synapse on 127.0.0.1, started once per test session for every Matrix test module; a test
                  that uses it (directly or through the fixtures below) carries the ``synapse`` marker.
* ``bot_user`` -- a fresh bot account for the test; ``alice``, ``bob`` -- fresh human accounts (``User``).
* ``matrix_settings`` -- Settings for the bot (access token, tmp database, no LLM).

``BotRunner`` and ``db_rows`` are in tests/matrix/bot_runner.py, the test users' client in tests/matrix/client.py.
"""

from __future__ import annotations

import itertools

import pytest

from knowledge.loader import PACKAGE_KNOWLEDGE_DIR
from tests.matrix.synapse import SYNAPSE_VENV, Synapse, synapse_available

_names = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test that needs the homeserver (directly or through the fixtures below) is a `synapse` test.
    for item in items:
        if "synapse" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.synapse)


@pytest.fixture(scope="session")
def synapse(tmp_path_factory):
    """A real Synapse homeserver on 127.0.0.1, one per test session; skipped with a reason when ``.venv-synapse``
    is missing (``make test`` creates it, ``scripts/synapse-venv.sh`` too)."""
    if not synapse_available():
        pytest.skip(f"Synapse is not installed in {SYNAPSE_VENV} (run `make test` or scripts/synapse-venv.sh)")
    server = Synapse(tmp_path_factory.mktemp("synapse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _fresh(synapse: Synapse, prefix: str, displayname: str | None = None):
    return synapse.register(f"{prefix}{next(_names)}", displayname=displayname)


@pytest.fixture
def bot_user(synapse):
    return _fresh(synapse, "faqbot", displayname="问答助手")


@pytest.fixture
def alice(synapse):
    return _fresh(synapse, "alice")


@pytest.fixture
def bob(synapse):
    return _fresh(synapse, "bob")


@pytest.fixture
def matrix_settings(tmp_path, synapse, bot_user):
    from bot.app.settings import Settings

    return Settings(
        db=tmp_path / "data" / "faqbot.db",
        knowledge_dir=PACKAGE_KNOWLEDGE_DIR,
        openai_api_key=None,
        openai_base_url=None,
        telegram_bot_token=None,
        matrix_homeserver=synapse.base_url,
        matrix_user_id=bot_user.user_id,
        matrix_access_token=bot_user.access_token,
        matrix_allowed=[],
        transports=["matrix"],
    )
