"""Console chat: interactive (line editing and history via readline) or piped (one answer per input line)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

PROMPT = "您的问题> "
HISTORY = Path(os.environ.get("FAQBOT_HISTORY", Path.home() / ".faqbot_history"))


def _setup_readline():
    """Line editing and a history file that never holds a raw ID, phone or card number; returns the module."""
    try:
        import readline
    except ImportError:  # not available on every platform; input() still works
        return None
    from bot.answering.privacy import mask_pii

    readline.set_auto_history(False)  # lines are added masked, by _remember
    try:
        readline.read_history_file(HISTORY)
    except OSError:
        pass
    # A history written before masking existed may hold raw numbers: mask what was loaded (saved back on exit).
    for i in range(readline.get_current_history_length()):
        item = readline.get_history_item(i + 1)  # 1-based, unlike replace_history_item
        if item and (masked := mask_pii(item).text) != item:
            readline.replace_history_item(i, masked)
    readline.set_history_length(500)
    import atexit

    def _save() -> None:
        try:
            readline.write_history_file(HISTORY)
            os.chmod(HISTORY, 0o600)
        except OSError:
            pass

    atexit.register(_save)
    return readline


def _remember(readline, line: str) -> None:
    """Add ``line`` to the shell history with personal numbers masked (the answer says they are not kept)."""
    from bot.answering.privacy import mask_pii

    if readline is not None and line.strip():
        readline.add_history(mask_pii(line).text)


async def run_console(settings, *, stdin=None, stdout=None) -> int:
    from bot.answering import texts
    from bot.answering.types import Conversation
    from bot.app.services import build_services, setup_logging

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    setup_logging(settings)
    services = await build_services(settings)  # broken knowledge raises KnowledgeError: bot.cli.main prints it
    interactive = stdin.isatty() and stdout.isatty()
    if interactive and "FAQBOT_LOG_LEVEL" not in os.environ:
        import logging

        # Keep the chat readable: only warnings and errors between the answers.
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    conv = Conversation(
        channel="console", chat_id="console", chat_type="console", user_id=os.environ.get("USER", "console")
    )
    loop = asyncio.get_running_loop()
    readline = None
    try:
        if interactive:
            readline = _setup_readline()
            stdout.write(
                texts.WELCOME.replace("点击下方的话题", "输入 /faq 查看全部问题")
                + "\n（输入 /quit 或按 Ctrl-D 退出）\n"
            )
        while True:
            try:
                if interactive:
                    line = await loop.run_in_executor(None, input, PROMPT)
                    _remember(readline, line)
                else:
                    line = await loop.run_in_executor(None, stdin.readline)
                    if line == "":
                        break
                    line = line.rstrip("\n")
            except EOFError:
                break
            cmd = line.strip()
            if interactive and cmd in ("/quit", "/exit", "退出"):
                break
            if cmd == "/faq":
                stdout.write("\n".join(f"{e.section}. {e.question}" for e in services.answerer.kb.entries) + "\n")
                continue
            if cmd == "/help":
                stdout.write(texts.HELP + "\n")
                continue
            text = ""
            async for event in services.answerer.stream(line, conv):
                text = event.text
            stdout.write(text + "\n\n" if interactive else text + "\n")
            stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        await services.aclose()
    return 0
