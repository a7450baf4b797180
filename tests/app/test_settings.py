"""Settings: per-concern classes combined into the application's Settings keep every variable name.

`.env.example` documents every setting, every variable it names sets its field (through the environment and through
`.env`), and the "is Telegram / Matrix configured" questions have one answer each."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from bot.answering.settings import AnsweringSettings
from bot.app.settings import Settings
from bot.llm.settings import LLMSettings
from tests.conftest import REPO

_SCRUB = ("TELEGRAM_", "OPENAI_", "MATRIX_", "FAQBOT_")


def env_name(cls: type, name: str) -> str:
    field = cls.model_fields[name]
    alias = field.validation_alias
    return alias if isinstance(alias, str) else (cls.model_config["env_prefix"] + name).upper()


def documented() -> set[str]:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))


def sample(name: str, field) -> str:
    """A valid value unlike the default, as it would be written in the environment."""
    ann, default = field.annotation, field.get_default(call_default_factory=True)
    args = typing.get_args(ann)
    if typing.get_origin(ann) is typing.Literal:
        return next(a for a in args if a != default)
    if ann is bool or (bool in args):
        return "false" if default else "true"
    if ann is int:
        return str(default + 3)
    if ann is float:
        return "0.25" if name == "llm_temperature" else str(default + 1.5)
    if ann is Path:
        return f"/tmp/{name}"
    if typing.get_origin(ann) is list or (args and typing.get_origin(args[0]) is list):
        return "[7, 8]" if "ids" in name and "matrix" not in name else "a.org, !b:c.org"
    return f"{name}-value"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    import os

    for key in list(os.environ):
        if key.startswith(_SCRUB):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    return tmp_path


def test_env_example_documents_every_setting():
    names = {env_name(Settings, n) for n in Settings.model_fields}
    assert names - documented() == set()
    assert documented() - names == set()  # nothing documented that no field reads


def _check(settings: Settings, values: dict[str, str]) -> None:
    for name, raw in values.items():
        value = getattr(settings, name)
        value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        default = Settings.model_fields[name].get_default(call_default_factory=True)
        assert value != default, name
        if isinstance(value, str):
            assert value == raw, name


def test_every_documented_variable_sets_its_field_from_the_environment(clean_env, monkeypatch):
    values = {n: sample(n, f) for n, f in Settings.model_fields.items()}
    for name, raw in values.items():
        monkeypatch.setenv(env_name(Settings, name), raw)
    _check(Settings(), values)
    assert Settings().admin_ids == [7, 8] and Settings().matrix_allowed == ["a.org", "!b:c.org"]


def test_every_documented_variable_sets_its_field_from_dotenv(clean_env):
    values = {n: sample(n, f) for n, f in Settings.model_fields.items()}
    lines = [f"{env_name(Settings, n)}={v}" for n, v in values.items()]
    (clean_env / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _check(Settings(), values)
    assert Settings(_env_file=None).llm_top_k == 4  # the file is what set them


def test_concern_classes_read_their_own_variables_alone(clean_env, monkeypatch):
    monkeypatch.setenv("FAQBOT_MAX_QUESTION_CHARS", "99")
    monkeypatch.setenv("OPENAI_MODEL", "o3")
    monkeypatch.setenv("FAQBOT_LLM_TOP_K", "2")
    assert AnsweringSettings().max_question_chars == 99
    llm = LLMSettings()
    assert (llm.openai_model, llm.llm_top_k, llm.llm_enabled) == ("o3", 2, False)
    assert not hasattr(llm, "max_question_chars")
    # Field names work as keyword arguments (tests and overrides), aliases as well.
    assert Settings(openai_model="m1").openai_model == "m1"
    assert Settings(TELEGRAM_BOT_TOKEN="1:a").telegram_configured


def test_bare_field_names_in_the_environment_are_not_read(clean_env, monkeypatch):
    # The old per-field alias choices also read `DB`, `SECRET`, `CURATOR` ... from the environment.
    monkeypatch.setenv("DB", "/tmp/other.db")
    monkeypatch.setenv("LLM_TOP_K", "9")
    s = Settings()
    assert s.db == Path("data/faqbot.db") and s.llm_top_k == 4


@pytest.mark.parametrize(
    "env, telegram", [({}, False), ({"TELEGRAM_BOT_TOKEN": ""}, False), ({"TELEGRAM_BOT_TOKEN": "1:abc"}, True)]
)
def test_telegram_configured(clean_env, monkeypatch, env, telegram):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert Settings().telegram_configured is telegram


@pytest.mark.parametrize(
    "env, configured, requested",
    [
        ({}, False, False),
        ({"MATRIX_HOMESERVER": "http://h"}, False, False),
        ({"MATRIX_HOMESERVER": "http://h", "MATRIX_ACCESS_TOKEN": "t"}, True, True),
        ({"MATRIX_HOMESERVER": "http://h", "MATRIX_ACCESS_TOKEN": ""}, False, False),
        ({"MATRIX_HOMESERVER": "http://h", "MATRIX_USER_ID": "@b:h"}, False, True),  # the runner names what is missing
        ({"MATRIX_HOMESERVER": "http://h", "MATRIX_USER_ID": "@b:h", "MATRIX_PASSWORD": "p"}, True, True),
        ({"MATRIX_ACCESS_TOKEN": "t"}, False, False),
    ],
)
def test_matrix_configured(clean_env, monkeypatch, env, configured, requested):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert (s.matrix_configured, s.matrix_requested) == (configured, requested)
