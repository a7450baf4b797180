"""`faqbot` entry point: parse the command line, run the command, and turn whatever it raises into one message and
an exit code -- the one place the CLI handles errors (bot.cli.errors.describe words them).

Every command prints through a redacting stream: a configured secret (or anything shaped like a bot token or an API
key) echoed by a server, stored in an old log row or raised in an error never reaches the terminal.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from bot.app.log_filter import RedactingStream, install_redaction, secret_redactor
from bot.cli.errors import describe, expected
from bot.cli.inputs import db_path, settings
from bot.cli.parser import build_parser


def _configured_secrets() -> list[str]:
    """The configured secrets, or none when the settings cannot be read (the command itself reports that)."""
    try:
        return settings().secret_values()
    except Exception:  # noqa: BLE001 - invalid settings: the command itself says what is wrong
        return []


def _command(args):
    """The function named by the subcommand ("module:function"), imported now: see bot.cli.parser."""
    module, _, name = args.func.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    secrets = _configured_secrets()
    redact = secret_redactor(secrets)
    install_redaction(secrets)  # log records too, also where no command configures logging (`ask`)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout, redact), RedactingStream(sys.stderr, redact)
    try:
        code = int(_command(args)(args) or 0)
        sys.stdout.flush()  # a full disk under stdout shows here, not as an error at interpreter exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout(saved[0])
        return 0
    except Exception as exc:  # every error a user can cause ends as a message, never a traceback
        code, message = describe(exc, db=_log_of(args))
        if os.environ.get("FAQBOT_DEBUG") and not expected(exc):
            traceback.print_exc()
        if isinstance(exc, OSError) and exc.filename is None:  # no file named: writing standard output failed
            _silence_stdout(saved[0])
            message = message.replace("faqbot: ", "faqbot: cannot write the output: ", 1)
        print(message, file=sys.stderr)
        return code
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
        sys.stdout, sys.stderr = saved


def _log_of(args):
    """The log database a command with --db works on (named in database errors), else None."""
    if not hasattr(args, "db"):
        return None
    try:
        return db_path(args)
    except Exception:  # noqa: BLE001 - invalid settings: the error being reported says enough
        return None


def _silence_stdout(stream) -> None:
    """Point standard output at /dev/null so the interpreter's final flush cannot fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
