"""Wiring: build the answering core with its optional log and LLM from settings (used by every entry point)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.answering.answerer import Answerer
    from bot.app.settings import Settings
    from storage.writer import TurnLog

log = logging.getLogger("faqbot")


@dataclass
class Services:
    settings: Settings
    answerer: Answerer
    turn_log: TurnLog | None = None
    llm: object | None = None
    # Run after a knowledge reload, by channel name: each transport registers how it tells the askers whose
    # questions now have an answer (bot/answering/follow_ups.py), so a reload from any channel reaches all of them.
    followers: dict[str, Callable[[], Awaitable[Any]]] = field(default_factory=dict)

    async def after_reload(self) -> None:
        for name, follow in list(self.followers.items()):
            try:
                await follow()
            except Exception:  # one channel failing must not keep the others from their follow-ups
                log.exception("follow-ups after the reload failed on %s", name)

    secret: bytes | None = None  # the pseudonymizing key of the log (None without a log)

    async def aclose(self) -> None:
        if self.turn_log is not None:
            await self.turn_log.close()
        closer = getattr(self.llm, "aclose", None)
        if closer is not None:
            await closer()


def setup_logging(settings: Settings) -> None:
    from bot.app.log_filter import install_redaction

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
    from bot.answering.answerer import Answerer
    from knowledge.loader import load_knowledge

    kb = load_knowledge(settings.knowledge_dir)
    llm = build_llm(settings, kb) if with_llm else None
    turn_log = None
    secret = None
    if with_log:
        from bot.app.log_filter import secret_redactor
        from storage.secret_key import load_or_create_secret
        from storage.writer import TurnLog

        configured = settings.secret.get_secret_value() if settings.secret else None
        try:
            secret = load_or_create_secret(configured, settings.secret_file)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot create the pseudonymization key ({exc.strerror or exc}); set "
                "FAQBOT_SECRET or make the folder writable",
                str(settings.secret_file),
            ) from None
        turn_log = TurnLog(
            settings.db,
            secret=secret,
            logger=logging.getLogger("faqbot.log"),
            redact=secret_redactor(settings.secret_values()),
        )
        await turn_log.start()
    answerer = Answerer(settings, kb, llm=llm, turn_sink=turn_log)
    return Services(settings=settings, answerer=answerer, turn_log=turn_log, llm=llm, secret=secret)
