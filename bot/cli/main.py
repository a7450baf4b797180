"""`faqbot` command line. Imports are lazy: a one-shot `faqbot ask` must not pay for aiogram or openai."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys


def _settings():
    from bot.app.settings import Settings

    return Settings()


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _knowledge_or_exit(settings):
    from knowledge.loader import KnowledgeError, load_knowledge

    try:
        return load_knowledge(settings.knowledge_dir)
    except KnowledgeError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(1)


# -- ask --------------------------------------------------------------------------------------------
def cmd_ask(args) -> int:
    settings = _settings()
    if args.question is not None:
        questions = [args.question]
    else:  # bytes, decoded here: invalid UTF-8 becomes U+FFFD instead of failing the whole batch
        questions = [line.decode("utf-8", "replace").rstrip("\r\n") for line in sys.stdin.buffer]
    return asyncio.run(_ask(settings, questions, args))


async def _ask(settings, questions, args) -> int:
    from bot.answering.types import Conversation
    from bot.app.services import build_services
    from knowledge.loader import KnowledgeError

    try:
        services = await build_services(settings, with_log=args.log)
    except KnowledgeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if services.turn_log is not None and not services.turn_log.healthy:
        # --log asks for the exchange to be kept: say at once that it cannot be, rather than answer and then wait
        # for the writer's retries to give up.
        error = services.turn_log.last_error or "unavailable"
        await services.turn_log.close(timeout=0)
        print(f"faqbot: cannot write the conversation log {settings.db}: {error}", file=sys.stderr)
        return 1
    try:
        for q in questions:
            # Each batch line is an independent question: a "2" must not pick a choice offered to the line before.
            conv = Conversation(channel="cli", chat_id="cli", chat_type="cli")
            reply = await services.answerer.answer(q, conv)
            if args.json:
                _print_json(reply.as_dict())
            else:
                sys.stdout.write(f"[{reply.route.value}] {reply.text}\n")
                if len(questions) > 1:
                    sys.stdout.write("\n")
            sys.stdout.flush()
    finally:
        await services.aclose()
    return 0


# -- shell / run ------------------------------------------------------------------------------------
def cmd_shell(args) -> int:
    from bot.console import run_console

    return asyncio.run(run_console(_settings()))


def cmd_run(args) -> int:
    settings = _settings()
    transports = [t.lower() for t in settings.transports]
    if not transports:
        if settings.telegram_configured:
            transports.append("telegram")
        if settings.matrix_requested:
            transports.append("matrix")  # the runner says which Matrix setting is still missing
    if not transports:
        print("TELEGRAM_BOT_TOKEN is not set: starting the console shell on the built-in FAQ.", file=sys.stderr)
        from bot.console import run_console

        return asyncio.run(run_console(settings))
    from bot.app.runner import run_transports

    return asyncio.run(run_transports(settings, transports, freeze_gc=True))


# -- eval ---------------------------------------------------------------------------------------------
def cmd_eval(args) -> int:
    from bot.curation.evaluate import evaluate, render, threshold_problems

    settings = _settings()
    kb = _knowledge_or_exit(settings)
    reports = [evaluate(settings, kb, f) for f in args.file]
    if args.json:
        _print_json(reports[0] if len(reports) == 1 else reports)
    else:
        for report in reports:
            render(report)
    problems = [p for r in reports for p in threshold_problems(
        r, min_direct=args.min_direct, max_wrong=args.max_wrong, min_recall=args.min_recall,
        min_useful=args.min_useful)]
    for p in problems:
        print(p, file=sys.stderr)
    return 3 if problems else 0


# -- eval-guard --------------------------------------------------------------------------------------------
def cmd_eval_guard(args) -> int:
    from bot.llm.guard_eval import EvalFileError, evaluate, load, render_report
    from prompts.loader import PromptError, load_prompts

    settings = _settings()
    kb = _knowledge_or_exit(settings)
    try:
        report = evaluate(load(args.file, kb), kb, load_prompts(settings.prompts_dir))
    except (OSError, EvalFileError, PromptError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        _print_json(report)
    else:
        print(render_report(report))
    shown = max(report["generate"]["fabrications_shown"], report["quote"]["fabrications_shown"])
    if args.max_shown is not None and shown > args.max_shown:
        print(f"{shown} fabrications shown exceed --max-shown {args.max_shown}", file=sys.stderr)
        return 3
    rate = report["generate"]["faithful_withheld_rate"] * 100
    if args.max_withheld is not None and rate > args.max_withheld:
        print(f"generate mode withholds {rate:.1f}% of faithful answers, above --max-withheld {args.max_withheld}%",
              file=sys.stderr)
        return 3
    return 0


# -- knowledge check -----------------------------------------------------------------------------------
def cmd_knowledge_check(args) -> int:
    from bot.curation.evaluate import knowledge_conflicts
    from knowledge.loader import KnowledgeError, load_knowledge

    settings = _settings()
    directory = args.dir or settings.knowledge_dir
    try:
        kb = load_knowledge(directory)
    except KnowledgeError as exc:
        if args.json:
            _print_json({"ok": False, "errors": [str(p) for p in exc.problems]})
        else:
            print(str(exc), file=sys.stderr)
        return 1
    conflicts = knowledge_conflicts(kb)
    if args.json:
        _print_json({"ok": True, "version": kb.version, "entries": len(kb.entries),
                     "alternates": sum(len(e.alternates) for e in kb.entries),
                     "warnings": [str(w) for w in kb.warnings], "conflicts": conflicts})
    else:
        print(f"OK: {len(kb.entries)} entries, {sum(len(e.alternates) for e in kb.entries)} alternates, "
              f"version {kb.version}")
        for w in kb.warnings:
            print(f"warning: {w}")
        if conflicts:
            print(f"{len(conflicts)} alternates score higher against another entry:")
            for c in conflicts:
                print(f"  {c['file']} [{c['faq_id']}] '{c['alternate']}' -> {c['other_id']} "
                      f"({c['other_score']:.0f} vs own {c['own_score']:.0f})")
        else:
            print("No conflicts: every alternate scores highest on its own entry.")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse with a usage error on one line (argparse prints the whole usage block first); subcommand parsers
    inherit the class through ``add_subparsers``."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="faqbot", description="FAQ bot for the electronic social security card (电子社保卡).")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("ask", help="answer one question (or one per stdin line)")
    a.add_argument("question", nargs="?", help="the question; omit to read one question per line from stdin")
    a.add_argument("--json", action="store_true", help="one JSON object per answer")
    a.add_argument("--log", action="store_true", help="also write the exchange to the log database")
    a.set_defaults(func=cmd_ask)

    s = sub.add_parser("shell", help="interactive console chat")
    s.set_defaults(func=cmd_shell)

    r = sub.add_parser("run", help="start the configured transports (Telegram / Matrix), else the console shell")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("eval", help="measure matching on a labelled JSONL file")
    e.add_argument("file", nargs="+", help="labelled JSONL files, each reported on its own")
    e.add_argument("--json", action="store_true", help="one JSON object (a list of them for several files)")
    e.add_argument("--min-direct", type=float, help="fail (exit 3) if direct-correct %% of in-scope is below this")
    e.add_argument("--max-wrong", type=int, help="fail (exit 3) if wrong direct answers (incl. out-of-scope) exceed this")
    e.add_argument("--min-recall", type=float, help="fail (exit 3) if recall@3 %% is below this")
    e.add_argument("--min-useful", type=float,
                   help="fail (exit 3) if useful first replies (correct direct, or the right entry shown) %% is below this")
    e.set_defaults(func=cmd_eval)

    g = sub.add_parser("eval-guard", help="LLM modes on labelled model answers: fabrications shown, faithful withheld")
    g.add_argument("file", help="JSONL of labelled model answers (e.g. tests/data/guard_answers.jsonl)")
    g.add_argument("--json", action="store_true")
    g.add_argument("--max-shown", type=int, help="fail (exit 3) if more fabrications are shown in either mode")
    g.add_argument("--max-withheld", type=float, help="fail (exit 3) if generate mode withholds more %% of faithful answers")
    g.set_defaults(func=cmd_eval_guard)

    k = sub.add_parser("knowledge", help="knowledge base tools")
    ksub = k.add_subparsers(dest="knowledge_command", required=True)
    kc = ksub.add_parser("check", help="validate the knowledge files and report conflicting alternates")
    kc.add_argument("--dir", help="knowledge directory (default: FAQBOT_KNOWLEDGE_DIR or the built-in one)")
    kc.add_argument("--json", action="store_true")
    kc.set_defaults(func=cmd_knowledge_check)
    from bot.cli.knowledge import add_knowledge_verbs  # suggest, approve (reviews become knowledge)

    add_knowledge_verbs(ksub)

    try:
        from bot.cli.logs import add_logs_parser
    except ImportError:  # the review CLI is optional until storage lands
        pass
    else:
        add_logs_parser(sub)
    return p


def _configured_secrets() -> list[str]:
    """The configured secrets, or none when the settings cannot be read (the command itself reports that)."""
    try:
        return _settings().secret_values()
    except Exception:  # noqa: BLE001 - invalid settings: the command itself says what is wrong
        return []


def main(argv: list[str] | None = None) -> int:
    from bot.app.log_filter import RedactingStream, install_redaction, secret_redactor

    parser = build_parser()
    args = parser.parse_args(argv)
    # Every command prints through these: a configured secret (or anything shaped like a bot token or an API
    # key) echoed by a server, stored in an old log row or raised in an error never reaches the terminal.
    secrets = _configured_secrets()
    redact = secret_redactor(secrets)
    install_redaction(secrets)  # log records too, also where no command configures logging (`ask`)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout, redact), RedactingStream(sys.stderr, redact)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a full disk under stdout shows here, not as an error at interpreter exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout(saved[0])
        return 0
    except Exception as exc:  # every error a user can cause ends as one line, never a traceback
        import os

        from bot.cli.errors import describe

        code, message = describe(exc)
        if os.environ.get("FAQBOT_DEBUG"):
            import traceback

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


def _silence_stdout(stream) -> None:
    """Point standard output at /dev/null so the interpreter's final flush cannot fail a second time."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
