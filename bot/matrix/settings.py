"""Settings of the Matrix transport (``MATRIX_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from storage.settings import CsvStrs, FaqbotSettings


def _set(secret: SecretStr | None) -> bool:
    return secret is not None and bool(secret.get_secret_value())


class MatrixSettings(FaqbotSettings):
    matrix_homeserver: str | None = Field(None, validation_alias="MATRIX_HOMESERVER")
    matrix_user_id: str | None = Field(None, validation_alias="MATRIX_USER_ID")
    matrix_access_token: SecretStr | None = Field(None, validation_alias="MATRIX_ACCESS_TOKEN")
    matrix_password: SecretStr | None = Field(None, validation_alias="MATRIX_PASSWORD")
    matrix_admin_ids: CsvStrs = Field(default_factory=list, validation_alias="MATRIX_ADMIN_IDS")
    matrix_allowed: CsvStrs = Field(default_factory=list, validation_alias="MATRIX_ALLOWED")
    # End-to-end encryption: None = on when the crypto dependency (python-olm) is installed (bot.matrix.app).
    matrix_e2ee: bool | None = Field(None, validation_alias="MATRIX_E2EE")
    # The account's cross-signing recovery key, when its cross-signing was set up elsewhere (bot.matrix.e2ee).
    matrix_recovery_key: SecretStr | None = Field(None, validation_alias="MATRIX_RECOVERY_KEY")

    @property
    def has_matrix_token(self) -> bool:
        return _set(self.matrix_access_token)

    @property
    def has_matrix_password(self) -> bool:
        return _set(self.matrix_password)

    @property
    def matrix_configured(self) -> bool:
        """Enough to log in: a homeserver and an access token, or a user id with a password."""
        return bool(self.matrix_homeserver) and (
            self.has_matrix_token or (bool(self.matrix_user_id) and self.has_matrix_password)
        )

    @property
    def matrix_requested(self) -> bool:
        """Matrix is meant to run (a homeserver and a user id or token), configured completely or not: `faqbot run`
        then starts it, and the runner names the setting still missing rather than falling back to the console."""
        return bool(self.matrix_homeserver) and (bool(self.matrix_user_id) or self.has_matrix_token)
