"""Settings of the Telegram transport (the ``TELEGRAM_*`` names are Telegram's own; the rest are FAQBOT_*)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from storage.settings import CsvInts, FaqbotSettings


class TelegramSettings(FaqbotSettings):
    telegram_bot_token: SecretStr | None = Field(None, validation_alias="TELEGRAM_BOT_TOKEN")
    telegram_api_url: str | None = Field(None, validation_alias="TELEGRAM_API_URL")
    telegram_webhook_url: str | None = Field(None, validation_alias="TELEGRAM_WEBHOOK_URL")
    telegram_webhook_secret: SecretStr | None = Field(None, validation_alias="TELEGRAM_WEBHOOK_SECRET")
    telegram_webhook_host: str = Field("127.0.0.1", validation_alias="TELEGRAM_WEBHOOK_HOST")
    telegram_webhook_port: int = Field(8080, validation_alias="TELEGRAM_WEBHOOK_PORT")
    admin_ids: CsvInts = Field(default_factory=list)  # Telegram user ids allowed /stats, /gaps, /reload
    group_auto_answer: bool = False

    @property
    def telegram_configured(self) -> bool:
        """A bot token is set (an empty value counts as unset)."""
        return self.telegram_bot_token is not None and bool(self.telegram_bot_token.get_secret_value())
