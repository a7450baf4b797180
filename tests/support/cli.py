"""The real `faqbot` command line, run the ways the tests need it:

* ``faqbot(*args, env=..., cwd=..., stdin=...)`` -- a subprocess (exit code, stdout, stderr, signals, limits);
* ``faqbot_async(...)`` -- the same from a test whose event loop serves a fake (Bot API, LLM) meanwhile;
* ``faqbot_main(capsys, *args)`` and ``run_logs(capsys, ...)`` -- ``bot.cli.main.main`` in-process, when only the
  output and the exit code count (much faster than a process).

A child gets ``env`` (default: this environment without the bot's settings, see tests/support/env.py) with
``PYTHONPATH`` set to this checkout, so it runs this repository's code from any working folder.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Mapping
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


def faqbot_main(capsys: Any, *args: Any) -> tuple[int, str, str]:
    """`faqbot ARGS…` in-process: (exit code, stdout, stderr)."""
    from bot.cli.main import main

    code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def run_logs(capsys: Any, *args: Any) -> tuple[int, str, str]:
    """`faqbot logs ARGS…` in-process: (exit code, stdout, stderr)."""
    return faqbot_main(capsys, "logs", *args)


def run_logs_json(capsys: Any, *args: Any) -> Any:
    """`faqbot logs ARGS… --json` in-process; asserts exit code 0 and returns the parsed output."""
    code, out, err = run_logs(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)
