"""Settings from the environment and `.env` (pydantic-settings). Every field is documented in `.env.example`."""
from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from typing import Annotated, Literal

from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from knowledge.loader import PACKAGE_KNOWLEDGE_DIR
from prompts.loader import PROMPTS_DIR



class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # --- knowledge and matching -------------------------------------------------------------
    knowledge_dir: Path = Field(PACKAGE_KNOWLEDGE_DIR, validation_alias=AliasChoices("FAQBOT_KNOWLEDGE_DIR", "knowledge_dir"))
    direct_threshold: float = Field(50.0, validation_alias=AliasChoices("FAQBOT_DIRECT_THRESHOLD", "direct_threshold"))
    clarify_threshold: float = Field(40.0, validation_alias=AliasChoices("FAQBOT_CLARIFY_THRESHOLD", "clarify_threshold"))
    direct_margin: float = Field(8.0, validation_alias=AliasChoices("FAQBOT_DIRECT_MARGIN", "direct_margin"))
    direct_lead: float = Field(15.0, validation_alias=AliasChoices("FAQBOT_DIRECT_LEAD", "direct_lead"))
    related_threshold: float = Field(33.0, validation_alias=AliasChoices("FAQBOT_RELATED_THRESHOLD", "related_threshold"))
    max_question_chars: int = Field(2000, validation_alias=AliasChoices("FAQBOT_MAX_QUESTION_CHARS", "max_question_chars"))
    match_prefix_chars: int = Field(120, validation_alias=AliasChoices("FAQBOT_MATCH_PREFIX_CHARS", "match_prefix_chars"))

    # --- log ----------------------------------------------------------------------------------
    db: Path = Field(Path("data/faqbot.db"), validation_alias=AliasChoices("FAQBOT_DB", "db"))
    secret: SecretStr | None = Field(None, validation_alias=AliasChoices("FAQBOT_SECRET", "secret"))
    retention_days: int = Field(90, validation_alias=AliasChoices("FAQBOT_RETENTION_DAYS", "retention_days"))
    log_level: str = Field("INFO", validation_alias=AliasChoices("FAQBOT_LOG_LEVEL", "log_level"))
    curator: str | None = Field(None, validation_alias=AliasChoices("FAQBOT_CURATOR", "curator"))  # else the OS user
    review_password: SecretStr | None = Field(None, validation_alias=AliasChoices("FAQBOT_REVIEW_PASSWORD", "review_password"))

    # --- LLM fallback (on when OPENAI_API_KEY or OPENAI_BASE_URL is set) -----------------------
    openai_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key"))
    openai_base_url: str | None = Field(None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url"))
    openai_model: str = Field("gpt-4o-mini", validation_alias=AliasChoices("OPENAI_MODEL", "openai_model"))
    llm_top_k: int = Field(4, validation_alias=AliasChoices("FAQBOT_LLM_TOP_K", "llm_top_k"))
    llm_for_clarify: bool = Field(True, validation_alias=AliasChoices("FAQBOT_LLM_FOR_CLARIFY", "llm_for_clarify"))
    llm_max_tokens: int = Field(400, validation_alias=AliasChoices("FAQBOT_LLM_MAX_TOKENS", "llm_max_tokens"))
    llm_temperature: float = Field(0.1, ge=0.0, le=0.3, validation_alias=AliasChoices("FAQBOT_LLM_TEMPERATURE", "llm_temperature"))
    llm_timeout: float = Field(8.0, validation_alias=AliasChoices("FAQBOT_LLM_TIMEOUT", "llm_timeout"))
    llm_budget: float = Field(20.0, validation_alias=AliasChoices("FAQBOT_LLM_BUDGET", "llm_budget"))
    llm_max_retries: int = Field(2, validation_alias=AliasChoices("FAQBOT_LLM_MAX_RETRIES", "llm_max_retries"))
    llm_breaker_failures: int = Field(5, validation_alias=AliasChoices("FAQBOT_LLM_BREAKER_FAILURES", "llm_breaker_failures"))
    llm_breaker_cooldown: float = Field(60.0, validation_alias=AliasChoices("FAQBOT_LLM_BREAKER_COOLDOWN", "llm_breaker_cooldown"))
    llm_history_turns: int = Field(3, validation_alias=AliasChoices("FAQBOT_LLM_HISTORY_TURNS", "llm_history_turns"))
    # quote: the model only picks entries and sentences, the reply is curated text; generate: the model writes it.
    llm_mode: Literal["quote", "generate"] = Field("quote", validation_alias=AliasChoices("FAQBOT_LLM_MODE", "llm_mode"))
    # generate mode: a second short model call lists unsupported claims; any listed claim withholds the answer.
    llm_verify: bool = Field(False, validation_alias=AliasChoices("FAQBOT_LLM_VERIFY", "llm_verify"))
    # auto: JSON Schema via response_format, dropped for the process if the server rejects it; or json_schema,
    # json_object, text (prompt + strict parser only).
    llm_response_format: Literal["auto", "json_schema", "json_object", "text"] = Field(
        "auto", validation_alias=AliasChoices("FAQBOT_LLM_RESPONSE_FORMAT", "llm_response_format"))
    # auto: max_completion_tokens (and no temperature) for OpenAI reasoning models (o1/o3/o4/gpt-5...), else max_tokens.
    llm_token_param: Literal["auto", "max_tokens", "max_completion_tokens"] = Field(
        "auto", validation_alias=AliasChoices("FAQBOT_LLM_TOKEN_PARAM", "llm_token_param"))
    # Token limit for reasoning models: their hidden reasoning counts against it.
    llm_reasoning_max_tokens: int = Field(4000, validation_alias=AliasChoices("FAQBOT_LLM_REASONING_MAX_TOKENS", "llm_reasoning_max_tokens"))
    prompts_dir: Path = Field(PROMPTS_DIR, validation_alias=AliasChoices("FAQBOT_PROMPTS_DIR", "prompts_dir"))

    # --- Telegram -----------------------------------------------------------------------------
    telegram_bot_token: SecretStr | None = Field(None, validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN", "telegram_bot_token"))
    telegram_api_url: str | None = Field(None, validation_alias=AliasChoices("TELEGRAM_API_URL", "telegram_api_url"))
    telegram_webhook_url: str | None = Field(None, validation_alias=AliasChoices("TELEGRAM_WEBHOOK_URL", "telegram_webhook_url"))
    telegram_webhook_secret: SecretStr | None = Field(None, validation_alias=AliasChoices("TELEGRAM_WEBHOOK_SECRET", "telegram_webhook_secret"))
    telegram_webhook_host: str = Field("127.0.0.1", validation_alias=AliasChoices("TELEGRAM_WEBHOOK_HOST", "telegram_webhook_host"))
    telegram_webhook_port: int = Field(8080, validation_alias=AliasChoices("TELEGRAM_WEBHOOK_PORT", "telegram_webhook_port"))
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list, validation_alias=AliasChoices("FAQBOT_ADMIN_IDS", "admin_ids"))
    group_auto_answer: bool = Field(False, validation_alias=AliasChoices("FAQBOT_GROUP_AUTO_ANSWER", "group_auto_answer"))

    # --- Matrix -------------------------------------------------------------------------------
    matrix_homeserver: str | None = Field(None, validation_alias=AliasChoices("MATRIX_HOMESERVER", "matrix_homeserver"))
    matrix_user_id: str | None = Field(None, validation_alias=AliasChoices("MATRIX_USER_ID", "matrix_user_id"))
    matrix_access_token: SecretStr | None = Field(None, validation_alias=AliasChoices("MATRIX_ACCESS_TOKEN", "matrix_access_token"))
    matrix_password: SecretStr | None = Field(None, validation_alias=AliasChoices("MATRIX_PASSWORD", "matrix_password"))
    matrix_admin_ids: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias=AliasChoices("MATRIX_ADMIN_IDS", "matrix_admin_ids"))
    matrix_allowed: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias=AliasChoices("MATRIX_ALLOWED", "matrix_allowed"))
    # End-to-end encryption: None = on when the crypto dependency (python-olm) is installed (bot.matrix.app).
    matrix_e2ee: bool | None = Field(None, validation_alias=AliasChoices("MATRIX_E2EE", "matrix_e2ee"))
    # The account's cross-signing recovery key, when its cross-signing was set up elsewhere (bot.matrix.e2ee).
    matrix_recovery_key: SecretStr | None = Field(None, validation_alias=AliasChoices("MATRIX_RECOVERY_KEY", "matrix_recovery_key"))
    transports: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias=AliasChoices("FAQBOT_TRANSPORTS", "transports"))

    @field_validator("admin_ids", "matrix_admin_ids", "matrix_allowed", "transports", mode="before")
    @classmethod
    def _split_csv(cls, v):
        # Accept "1,2,3" as well as JSON lists from the environment.
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                import json

                return json.loads(v)
            return [p.strip() for p in v.split(",") if p.strip()]
        if isinstance(v, int):
            return [v]
        return v

    @property
    def llm_enabled(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)

    @property
    def secret_file(self) -> Path:
        return self.db.parent / "secret.key"

    def secret_values(self) -> list[str]:
        """Every configured secret, for log redaction."""
        out = []
        for s in (self.telegram_bot_token, self.openai_api_key, self.telegram_webhook_secret,
                  self.matrix_access_token, self.matrix_password, self.matrix_recovery_key, self.review_password,
                  self.secret):
            if s is not None and s.get_secret_value():
                out.append(s.get_secret_value())
        return out


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
