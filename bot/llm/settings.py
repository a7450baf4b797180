"""Settings of the LLM fallback (on when OPENAI_API_KEY or OPENAI_BASE_URL is set)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from bot.answering.settings import AnsweringSettings
from prompts.loader import PROMPTS_DIR
from storage.settings import FaqbotSettings


class LLMSettings(FaqbotSettings):
    """The OpenAI-compatible server and how it is asked (``bot.llm.client``, ``bot.llm.fallback``)."""

    # The usual names of the OpenAI client, not FAQBOT_*.
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(None, validation_alias="OPENAI_BASE_URL")
    openai_model: str = Field("gpt-4o-mini", validation_alias="OPENAI_MODEL")
    llm_top_k: int = 4
    llm_max_tokens: int = 400
    llm_temperature: float = Field(0.1, ge=0.0, le=0.3)
    llm_timeout: float = 8.0
    llm_budget: float = 20.0
    llm_max_retries: int = 2
    llm_breaker_failures: int = 5
    llm_breaker_cooldown: float = 60.0
    llm_history_turns: int = 3
    # quote: the model only picks entries and sentences, the reply is curated text; generate: the model writes it.
    llm_mode: Literal["quote", "generate"] = "quote"
    # generate mode: a second short model call lists unsupported claims; any listed claim withholds the answer.
    llm_verify: bool = False
    # auto: JSON Schema via response_format, dropped for the process if the server rejects it; or json_schema,
    # json_object, text (prompt + strict parser only).
    llm_response_format: Literal["auto", "json_schema", "json_object", "text"] = "auto"
    # auto: max_completion_tokens (and no temperature) for OpenAI reasoning models (o1/o3/o4/gpt-5...), else max_tokens.
    llm_token_param: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto"
    # Token limit for reasoning models: their hidden reasoning counts against it.
    llm_reasoning_max_tokens: int = 4000
    prompts_dir: Path = PROMPTS_DIR

    @property
    def llm_enabled(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)


class FallbackSettings(LLMSettings, AnsweringSettings):
    """What the fallback reads: its own settings and the question limits of the answering core it extends."""
