"""The application's settings: every concern's settings class combined (pydantic-settings, environment and `.env`).

Each concern keeps its settings next to the code that reads them, and the lower layers are typed against their own
class only: ``storage.settings.LogSettings``, ``bot.answering.settings.AnsweringSettings``,
``bot.llm.settings.LLMSettings``, ``bot.telegram.settings.TelegramSettings``, ``bot.matrix.settings.MatrixSettings``,
``bot.cli.settings.ReviewSettings``. They share one env prefix (``FAQBOT_``; other services' names such as
``OPENAI_API_KEY`` are spelled out on their fields), so combining them by inheritance keeps every variable name.
Every variable is documented in ``.env.example`` (tests/test_llm_client.py checks both ways).
"""

from __future__ import annotations

from pydantic import Field

from bot.cli.settings import ReviewSettings
from bot.llm.settings import FallbackSettings
from bot.matrix.settings import MatrixSettings
from bot.telegram.settings import TelegramSettings
from storage.settings import CsvStrs, LogSettings


class Settings(FallbackSettings, LogSettings, ReviewSettings, TelegramSettings, MatrixSettings):
    log_level: str = "INFO"
    # Which transports `faqbot run` starts; empty: each one that is configured.
    transports: CsvStrs = Field(default_factory=list)

    def secret_values(self) -> list[str]:
        """Every configured secret, for log redaction."""
        out = []
        for s in (
            self.telegram_bot_token,
            self.openai_api_key,
            self.telegram_webhook_secret,
            self.matrix_access_token,
            self.matrix_password,
            self.matrix_recovery_key,
            self.review_password,
            self.secret,
        ):
            if s is not None and s.get_secret_value():
                out.append(s.get_secret_value())
        return out
