"""`faqbot ask`, `shell` and `run`: talk to the bot from the command line, or start its transports.

`ask` is a one-shot command in scripts: it loads the answering core only, never aiogram, openai, mautrix or
aiosqlite (unless --log asks for the log), and no rich either (tests/test_cli.py checks the first four).
"""

from __future__ import annotations

import asyncio
import json
import sys

from bot.answering.types import Conversation
from bot.app.runner import run_transports
from bot.app.services import build_services
from bot.cli.errors import FAILED, CommandError
from bot.cli.inputs import settings
from bot.console import run_console


def cmd_ask(args) -> int:
    config = settings()
    if args.question is not None:
        questions = [args.question]
    else:  # bytes, decoded here: invalid UTF-8 becomes U+FFFD instead of failing the whole batch
        questions = [line.decode("utf-8", "replace").rstrip("\r\n") for line in sys.stdin.buffer]
    return asyncio.run(_ask(config, questions, args))


async def _ask(config, questions, args) -> int:
    services = await build_services(config, with_log=args.log)
    if services.turn_log is not None and not services.turn_log.healthy:
        # --log asks for the exchange to be kept: say at once that it cannot be, rather than answer and then wait
        # for the writer's retries to give up.
        error = services.turn_log.last_error or "unavailable"
        await services.turn_log.close(timeout=0)
        raise CommandError(FAILED, f"faqbot: cannot write the conversation log {config.db}: {error}")
    try:
        for q in questions:
            # Each batch line is an independent question: a "2" must not pick a choice offered to the line before.
            conv = Conversation(channel="cli", chat_id="cli", chat_type="cli")
            reply = await services.answerer.answer(q, conv)
            if args.json:
                sys.stdout.write(json.dumps(reply.as_dict(), ensure_ascii=False) + "\n")
            else:
                sys.stdout.write(f"[{reply.route.value}] {reply.text}\n")
                if len(questions) > 1:
                    sys.stdout.write("\n")
            sys.stdout.flush()
    finally:
        await services.aclose()
    return 0


def cmd_shell(args) -> int:
    return asyncio.run(run_console(settings()))


def cmd_run(args) -> int:
    config = settings()
    transports = [t.lower() for t in config.transports]
    if not transports:
        if config.telegram_configured:
            transports.append("telegram")
        if config.matrix_requested:
            transports.append("matrix")  # the runner says which Matrix setting is still missing
    if not transports:
        print("TELEGRAM_BOT_TOKEN is not set: starting the console shell on the built-in FAQ.", file=sys.stderr)
        return asyncio.run(run_console(config))
    return asyncio.run(run_transports(config, transports, freeze_gc=True))
