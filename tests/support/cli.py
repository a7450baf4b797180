"""The real `faqbot` command line, run the ways the tests need it:

* ``faqbot(*args, env=..., cwd=..., stdin=...)`` -- a subprocess (exit code, stdout, stderr, signals, limits);
* ``faqbot_async(...)`` -- the same from a test whose event loop serves a fake (Bot API, LLM) meanwhile;
* ``faqbot_main(capsys, *args, stdin=...)`` and ``run_logs(capsys, ...)`` -- ``bot.cli.main.main`` in-process, when
  only the output, the stored rows and the exit code count (much faster than a process); ``faqbot_main_async`` runs
  it on a worker thread, for a test whose event loop serves a fake meanwhile. The process-wide state a command sets
  (standard input, the root logger's level and handlers, the redaction filters) is restored after each run; the
  environment is the test's (the ``main_env`` / ``clean_env`` fixtures).

A child gets ``env`` (default: this environment without the bot's settings, see tests/support/env.py) with
``PYTHONPATH`` set to this checkout, so it runs this repository's code from any working folder.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.env import clean_environ

REPO = Path(__file__).resolve().parents[2]


def faqbot_cmd() -> list[str]:
    """The installed `faqbot` entry point next to this interpreter (what users type), else `python -m bot`."""
    script = Path(sys.executable).with_name("faqbot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    full = dict(clean_environ() if env is None else env)
    full["PYTHONPATH"] = str(REPO)
    return full


def faqbot(
    *args: Any,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    stdin: str | bytes = "",
    timeout: float = 60,
    **kw: Any,
) -> subprocess.CompletedProcess:
    """`faqbot ARGS…` in a subprocess. Text in and out (UTF-8) unless ``stdin`` is bytes; other keywords go to
    ``subprocess.run`` (``stdout=`` a file, ``user=``, ``preexec_fn=``)."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    text = {} if isinstance(stdin, bytes) else {"text": True, "encoding": "utf-8"}
    return subprocess.run(
        [*faqbot_cmd(), *map(str, args)], input=stdin, env=child_env(env), cwd=cwd, timeout=timeout, **text, **kw
    )


async def faqbot_async(
    *args: Any, env: Mapping[str, str] | None = None, cwd: Path = REPO, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """`faqbot ARGS…` in a subprocess without blocking the event loop; stdout and stderr decoded as UTF-8."""
    proc = await asyncio.create_subprocess_exec(
        *faqbot_cmd(),
        *map(str, args),
        cwd=cwd,
        env=child_env(env),
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(None if stdin is None else stdin.encode()), timeout)
    return subprocess.CompletedProcess(list(args), proc.returncode, out.decode(), err.decode())


def faqbot_main(capsys: Any, *args: Any, stdin: str | bytes | None = None) -> tuple[int, str, str]:
    """`faqbot ARGS…` in-process: (exit code, stdout, stderr). ``stdin``: what the command reads from standard input
    (text is encoded as UTF-8; ``None``: nothing, as from /dev/null)."""
    from bot.cli.main import main

    with _restored_process_state(stdin):
        code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


async def faqbot_main_async(capsys: Any, *args: Any, stdin: str | bytes | None = None) -> tuple[int, str, str]:
    """`faqbot_main` on a worker thread (the command runs its own event loop), so this test's loop keeps serving."""
    return await asyncio.to_thread(faqbot_main, capsys, *args, stdin=stdin)


@contextmanager
def _restored_process_state(stdin: str | bytes | None) -> Iterator[None]:
    """Standard input from ``stdin`` during the run; afterwards the logging state a command changes, put back:
    `bot.app.services.setup_logging` sets the root logger's level (and adds a handler where there is none), and
    `bot.app.log_filter.install_redaction` puts a filter for this run's secrets on the root logger's handlers, on
    `logging.lastResort` and on the library loggers and their handlers. Left in place, they would redact or hide
    records in tests that run later on the same worker."""
    from bot.app.log_filter import LIBRARY_LOGGERS

    root = logging.getLogger()
    filterers: list[logging.Filterer] = [root, *root.handlers]
    if logging.lastResort is not None:
        filterers.append(logging.lastResort)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        filterers += [logger, *logger.handlers]
    saved_filters = [(f, list(f.filters)) for f in filterers]
    saved_level, saved_handlers, saved_stdin = root.level, list(root.handlers), sys.stdin
    data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
    sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    try:
        yield
    finally:
        sys.stdin = saved_stdin
        root.setLevel(saved_level)
        for handler in [h for h in root.handlers if h not in saved_handlers]:
            root.removeHandler(handler)
            handler.close()
        for filterer, filters in saved_filters:
            filterer.filters[:] = filters


def run_logs(capsys: Any, *args: Any, stdin: str | bytes | None = None) -> tuple[int, str, str]:
    """`faqbot logs ARGS…` in-process: (exit code, stdout, stderr)."""
    return faqbot_main(capsys, "logs", *args, stdin=stdin)


def run_logs_json(capsys: Any, *args: Any) -> Any:
    """`faqbot logs ARGS… --json` in-process; asserts exit code 0 and returns the parsed output."""
    code, out, err = run_logs(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)
