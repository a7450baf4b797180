"""Wiring: build the answering core with its optional log and LLM from settings (used by every entry point)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core import Answerer
    from storage.writer import TurnLog

log = logging.getLogger("faqbot")


@dataclass
class Services:
    settings: Settings
    answerer: Answerer
    turn_log: TurnLog | None = None
    llm: object | None = None
    secret: bytes | None = None  # the pseudonymizing key of the log (None without a log)

    async def aclose(self) -> None:
        if self.turn_log is not None:
            await self.turn_log.close()
        closer = getattr(self.llm, "aclose", None)
        if closer is not None:
            await closer()


def setup_logging(settings: Settings) -> None:
    from bot.secrets_filter import install_redaction

    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level)
    install_redaction(settings.secret_values())


def build_llm(settings: Settings, kb):
    if not settings.llm_enabled:
        return None
    from bot.llm.fallback import LLMFallback

    return LLMFallback(settings, kb)


async def build_services(settings: Settings, *, with_log: bool = True, with_llm: bool = True) -> Services:
    """Create the core, start the log writer (if wanted) and the LLM fallback (if configured)."""
    from bot.core import Answerer
    from knowledge.loader import load_knowledge

    kb = load_knowledge(settings.knowledge_dir)
    llm = build_llm(settings, kb) if with_llm else None
    turn_log = None
    secret = None
    if with_log:
        from bot.privacy import load_or_create_secret
        from bot.secrets_filter import secret_redactor
        from storage.writer import TurnLog

        configured = settings.secret.get_secret_value() if settings.secret else None
        try:
            secret = load_or_create_secret(configured, settings.secret_file)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot create the pseudonymization key ({exc.strerror or exc}); set "
                          "FAQBOT_SECRET or make the folder writable", str(settings.secret_file)) from None
        turn_log = TurnLog(settings.db, secret=secret, logger=logging.getLogger("faqbot.log"),
                           redact=secret_redactor(settings.secret_values()))
        await turn_log.start()
    answerer = Answerer(settings, kb, llm=llm, log_sink=turn_log)
    return Services(settings=settings, answerer=answerer, turn_log=turn_log, llm=llm, secret=secret)
