"""Environment scrubbing: no setting of the developer's shell (a bot token, an LLM key, a FAQBOT_ database or
knowledge folder) may switch on a transport or point a test at other data than the test intends."""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

SCRUB_PREFIXES = ("TELEGRAM_", "OPENAI_", "MATRIX_", "FAQBOT_")


def clean_environ() -> dict[str, str]:
    """This process's environment without the bot's settings: the base of every child process's environment."""
    return {k: v for k, v in os.environ.items() if not k.startswith(SCRUB_PREFIXES)}


def scrub_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for this process (in-process CLI and settings tests), undone by ``monkeypatch`` after the test."""
    for name in list(os.environ):
        if name.startswith(SCRUB_PREFIXES):
            monkeypatch.delenv(name)


def set_environ(monkeypatch: pytest.MonkeyPatch, values: Mapping[str, str]) -> None:
    """Set each of ``values`` in this process's environment for the test (an in-process command reads them)."""
    for name, value in values.items():
        monkeypatch.setenv(name, value)
