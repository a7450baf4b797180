"""`faqbot run`: start the configured chat transports on one answering core, stop them cleanly on a signal.

    exit = await run_transports(settings, ["telegram", "matrix"])

Services (core, log writer, LLM) are built once and shared. SIGTERM / SIGINT set a stop event: each transport
stops taking new messages, finishes the answers in flight, and then the log is drained (`Services.aclose`).
Returns 0 after a clean stop, 1 if a transport failed; a configuration it cannot run raises ``ConfigurationError``
and invalid knowledge ``KnowledgeError``, which `faqbot`'s one error handler (bot/cli/main.py) reports (exit 2 / 1).
The bot token is never printed: logging goes through the redaction filter installed by `setup_logging`, and
nothing here logs a setting's value.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable

from bot.app.settings import Settings

log = logging.getLogger("faqbot")

KNOWN_TRANSPORTS = ("telegram", "matrix")


class ConfigurationError(ValueError):
    """The settings ask for something `faqbot run` cannot start; the message names what is missing, in one line."""


class TransportStartError(RuntimeError):
    """A transport cannot start for a reason its message states in one line (wrong token, server unreachable).

    Logged without a traceback: the reason is known, the stack would only bury it.
    """


def _transport_runner(name: str) -> Callable[..., Awaitable[None]]:
    # Imported lazily: a Telegram-only deployment never imports mautrix, and vice versa.
    if name == "telegram":
        from bot.telegram.app import run_telegram

        return run_telegram
    if name == "matrix":
        from bot.matrix.app import run_matrix

        return run_matrix
    raise ValueError(f"unknown transport {name!r}")


def _config_error(settings: Settings, transports: list[str]) -> str | None:
    unknown = [t for t in transports if t not in KNOWN_TRANSPORTS]
    if unknown:
        return f"unknown transport(s) {', '.join(unknown)}; expected one of {', '.join(KNOWN_TRANSPORTS)}"
    if "telegram" in transports and not settings.telegram_configured:
        return "the telegram transport needs TELEGRAM_BOT_TOKEN"
    if "matrix" in transports and not settings.matrix_configured:
        return (
            "the matrix transport needs MATRIX_HOMESERVER and MATRIX_ACCESS_TOKEN (its user is asked with whoami), "
            "or MATRIX_HOMESERVER, MATRIX_USER_ID and MATRIX_PASSWORD"
        )
    return None


async def run_transports(settings: Settings, transports: list[str], *, freeze_gc: bool = False) -> int:
    from bot.app.services import build_services, setup_logging

    transports = list(dict.fromkeys(t.strip().lower() for t in transports if t.strip()))
    problem = _config_error(settings, transports)
    if problem:
        raise ConfigurationError(problem)
    try:
        runners = {name: _transport_runner(name) for name in transports}
    except ImportError as exc:
        raise ConfigurationError(f"cannot load a transport: {exc}") from exc
    setup_logging(settings)
    services = await build_services(settings)  # broken knowledge raises KnowledgeError: bot.cli.main prints it
    # Build the Simplified -> Traditional converter now (~30 ms), not in the middle of the first answer in
    # Traditional script: a long-running bot pays it once anyway. One-shot `faqbot ask` stays lazy.
    from knowledge.normalize import to_traditional

    to_traditional("社保卡")
    if freeze_gc:
        # Everything built so far (modules, pydantic schemas, the knowledge index) lives as long as the process.
        # Move it out of the cyclic GC's reach: otherwise every full collection re-scans ~200,000 objects, a
        # pause of 0.1-0.2 s in the middle of someone's answer (found under `make bench`). Only for the process
        # `faqbot run` owns: frozen objects are never freed, which a host process (tests) must not inherit.
        gc.collect()
        gc.freeze()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows / not the main thread
            loop.add_signal_handler(sig, _on_signal, sig, stop)
            installed.append(sig)

    tasks = {
        asyncio.create_task(run(services, settings, stop), name=f"transport-{name}"): name
        for name, run in runners.items()
    }
    failed = False
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                name = tasks[task]
                exc = task.exception()
                if isinstance(exc, TransportStartError):
                    failed = True
                    log.error("transport %s cannot start: %s", name, exc)
                elif exc is not None:
                    failed = True
                    log.error("transport %s failed: %s: %s", name, type(exc).__name__, exc, exc_info=exc)
                elif not stop.is_set():
                    log.warning("transport %s stopped by itself", name)
                if not stop.is_set():  # one transport down: stop the others too, cleanly
                    stop.set()
    except asyncio.CancelledError:
        stop.set()
        for task in tasks:
            task.cancel()
        raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await services.aclose()  # drains the conversation log
        log.info("faqbot stopped")
    return 1 if failed else 0


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    if not stop.is_set():
        log.info("received %s: stopping (finishing answers in flight)", sig.name)
    stop.set()
