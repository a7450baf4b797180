"""Settings of the conversation log, and the base every faqbot settings class shares.

Each concern has a small settings class in the layer that uses it (``bot/answering/settings.py``,
``bot/llm/settings.py``, ``bot/telegram/settings.py``, ...); ``bot/app/settings.py`` combines them into the
application's ``Settings``. They all read ``FAQBOT_<FIELD>`` from the environment and from ``.env`` (env_prefix);
only the names of other services (``OPENAI_*``, ``TELEGRAM_*``, ``MATRIX_*``) are spelled out on their fields.
Every variable is documented in ``.env.example``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def split_csv(value: Any) -> Any:
    """Accept "1,2,3" as well as a JSON list from the environment."""
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            return json.loads(value)
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, int):
        return [value]
    return value


# A list read from one variable, comma-separated or JSON ("NoDecode": pydantic-settings must not parse it as JSON).
CsvInts = Annotated[list[int], NoDecode, BeforeValidator(split_csv)]
CsvStrs = Annotated[list[str], NoDecode, BeforeValidator(split_csv)]


class FaqbotSettings(BaseSettings):
    """The base of every settings class: ``FAQBOT_`` variables from the environment and ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="FAQBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )


class LogSettings(FaqbotSettings):
    """The SQLite conversation log."""

    db: Path = Path("data/faqbot.db")
    secret: SecretStr | None = None  # HMAC key for pseudonymous user ids; else kept in `secret_file`
    retention_days: int = 90  # default for `faqbot logs purge`

    @property
    def secret_file(self) -> Path:
        return self.db.parent / "secret.key"
