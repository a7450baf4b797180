"""The `faqbot` command line: every command, verb and option in one parser.

Subcommands are lazy: each names its function as ``"module:function"`` (``bot.cli.main`` imports the module only
when the command runs), so building the parser imports only argparse, ``bot.cli.arguments`` and the names in
``storage.schema`` (no database code), and a one-shot `faqbot ask` never loads the review tools, rich or the
database layer.
"""

from __future__ import annotations

import argparse

from bot.cli.arguments import REVIEW_USER, ROUTES, parse_count, parse_duration, parse_port, parse_since
from storage.schema import FEEDBACK_FILTERS

# Kept here rather than read from storage.reviews.VERDICTS: building the parser must not import the database
# layer (`faqbot ask` stays light); tests/cli/test_review.py checks the two agree.
VERDICT_HELP = "one of: correct, entry, new-entry, out-of-scope, spam (also: ok, oos, new)"


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
    a.set_defaults(func="bot.cli.chat:cmd_ask")

    s = sub.add_parser("shell", help="interactive console chat")
    s.set_defaults(func="bot.cli.chat:cmd_shell")

    r = sub.add_parser("run", help="start the configured transports (Telegram / Matrix), else the console shell")
    r.set_defaults(func="bot.cli.chat:cmd_run")

    e = sub.add_parser("eval", help="measure matching on a labelled JSONL file")
    e.add_argument("file", nargs="+", help="labelled JSONL files, each reported on its own")
    e.add_argument("--json", action="store_true", help="one JSON object (a list of them for several files)")
    e.add_argument("--min-direct", type=float, help="fail (exit 3) if direct-correct %% of in-scope is below this")
    e.add_argument(
        "--max-wrong", type=int, help="fail (exit 3) if wrong direct answers (incl. out-of-scope) exceed this"
    )
    e.add_argument("--min-recall", type=float, help="fail (exit 3) if recall@3 %% is below this")
    e.add_argument(
        "--min-useful",
        type=float,
        help="fail (exit 3) if useful first replies (correct direct, or the right entry shown) %% is below this",
    )
    e.set_defaults(func="bot.cli.evaluate:cmd_eval")

    g = sub.add_parser("eval-guard", help="LLM modes on labelled model answers: fabrications shown, faithful withheld")
    g.add_argument("file", help="JSONL of labelled model answers (e.g. tests/data/guard_answers.jsonl)")
    g.add_argument("--json", action="store_true")
    g.add_argument("--max-shown", type=int, help="fail (exit 3) if more fabrications are shown in either mode")
    g.add_argument(
        "--max-withheld", type=float, help="fail (exit 3) if generate mode withholds more %% of faithful answers"
    )
    g.set_defaults(func="bot.cli.evaluate:cmd_eval_guard")

    _add_knowledge(sub)
    _add_logs(sub)
    return p


def _add_knowledge(sub) -> None:
    k = sub.add_parser("knowledge", help="knowledge base tools")
    ksub = k.add_subparsers(dest="knowledge_command", required=True)
    kc = ksub.add_parser("check", help="validate the knowledge files and report conflicting alternates")
    kc.add_argument("--dir", help="knowledge directory (default: FAQBOT_KNOWLEDGE_DIR or the built-in one)")
    kc.add_argument("--json", action="store_true")
    kc.set_defaults(func="bot.cli.knowledge:cmd_check")

    p = ksub.add_parser("suggest", help="turn open reviews into alternates and draft entries (diff first)")
    p.add_argument("--since", type=parse_since, metavar="WHEN", help="only reviews made since WHEN (7d, ISO date)")
    p.add_argument(
        "--replay-since",
        type=parse_since,
        metavar="WHEN",
        default=None,
        help="replay only turns since WHEN (default: all)",
    )
    p.add_argument("--write", action="store_true", help="write the changes (default: print them only)")
    p.add_argument("--dir", help="knowledge directory (default: FAQBOT_KNOWLEDGE_DIR or the built-in one)")
    p.add_argument("--db", help="log database (default: FAQBOT_DB)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="bot.cli.knowledge:cmd_suggest")

    p = ksub.add_parser("approve", help="validate a draft entry and move it into the knowledge base")
    p.add_argument("id", help="the draft's entry id (knowledge/drafts/ID.toml)")
    p.add_argument("--dir", help="knowledge directory (default: FAQBOT_KNOWLEDGE_DIR or the built-in one)")
    p.add_argument("--db", help="log database, to label the turns the draft came from (default: FAQBOT_DB)")
    p.add_argument("--curator", help="your name (default: FAQBOT_CURATOR, else the OS user)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="bot.cli.knowledge:cmd_approve")


def _add_logs(subparsers) -> None:
    """`logs` and its verbs: bot.cli.logs (reading and maintenance), bot.cli.review (verdicts), bot.cli.serve."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="log database (default: FAQBOT_DB, ./data/faqbot.db)")
    common.add_argument("--json", action="store_true", help="JSON output for scripts")

    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--route", choices=ROUTES, help="only turns routed faq / clarify / llm / none")
    filters.add_argument(
        "--since",
        type=parse_since,
        metavar="WHEN",
        help="only turns since WHEN: 7d, 24h, 30m or an ISO date/time (UTC unless it has an offset)",
    )
    filters.add_argument("--channel", help="only this channel (telegram, matrix, console, cli)")
    filters.add_argument(
        "--feedback",
        choices=FEEDBACK_FILTERS,
        help="latest feedback: up (👍), down (👎), none (none of these / 都不是); any = some feedback",
    )

    logs = subparsers.add_parser(
        "logs",
        help="review the conversation log (list, show, search, stats, gaps, replay, export, purge, compact, serve)",
        description="Review the conversation log. Every verb takes --db and --json.",
    )
    verbs = logs.add_subparsers(dest="logs_command", required=True, metavar="VERB")

    p = verbs.add_parser("list", parents=[common, filters], help="recent turns, newest first")
    p.add_argument("-n", "--limit", type=parse_count, default=20, help="how many (default 20; 0 = all)")
    p.set_defaults(func="bot.cli.logs:cmd_list")

    p = verbs.add_parser("show", parents=[common], help="the whole decision trace of one turn")
    p.add_argument("id", help="turn id or a unique prefix")
    p.set_defaults(func="bot.cli.logs:cmd_show")

    p = verbs.add_parser("search", parents=[common], help="turns whose question or answer contains TEXT")
    p.add_argument("text", help="any substring, Chinese included (3+ characters use the full-text index)")
    p.add_argument("-n", "--limit", type=parse_count, default=50, help="how many (default 50; 0 = all)")
    p.set_defaults(func="bot.cli.logs:cmd_search")

    p = verbs.add_parser("stats", parents=[common], help="turns by route and channel, feedback, latency, top entries")
    p.add_argument("--since", type=parse_since, metavar="WHEN", help="only turns since WHEN (7d, 24h, ISO date)")
    p.add_argument("--top", type=parse_count, default=10, help="how many most-asked entries (default 10)")
    p.set_defaults(func="bot.cli.logs:cmd_stats")

    p = verbs.add_parser(
        "gaps",
        parents=[common],
        help="the gap inbox: unanswered / disliked questions grouped by similarity, with snippets",
    )
    p.add_argument(
        "--since",
        type=parse_since,
        metavar="WHEN",
        default=None,
        help="only turns since WHEN (7d, 24h, ISO date; default 30d: a year of traffic would be slow)",
    )
    p.add_argument("--all", action="store_true", help="the whole log instead of the last 30 days")
    p.add_argument("-n", "--limit", type=parse_count, default=20, help="how many clusters (default 20; 0 = all)")
    p.add_argument("--knowledge", metavar="DIR", help="knowledge directory for the nearest entry (default: current)")
    p.add_argument("--similarity", type=float, default=0.35, help="cluster join threshold 0-1 (default 0.35)")
    p.add_argument(
        "--alternate-threshold",
        type=float,
        default=None,
        help="nearest-entry score from which an alternate is suggested (default: the clarify threshold)",
    )
    p.add_argument("--no-snippets", action="store_true", help="leave out the TOML snippets")
    p.set_defaults(func="bot.cli.logs:cmd_gaps")

    p = verbs.add_parser(
        "replay",
        parents=[common, filters],
        help="re-run logged questions against the current (or an edited) knowledge base",
    )
    p.add_argument(
        "-n", "--limit", type=parse_count, default=0, help="replay the N most recent selected turns (0 = all)"
    )
    p.add_argument("--knowledge", metavar="DIR", help="knowledge directory to try (default: the configured one)")
    p.set_defaults(func="bot.cli.logs:cmd_replay")

    p = verbs.add_parser("export", parents=[common, filters], help="all turns with feedback counts, as CSV or JSONL")
    p.add_argument(
        "--format",
        choices=("csv", "jsonl", "eval"),
        default="csv",
        help="csv (default), jsonl, or eval (with --reviewed: q/sections/kind for `faqbot eval`)",
    )
    p.add_argument(
        "--reviewed",
        action="store_true",
        help="the reviewed turns as a regression set (needs --format eval); --since = reviewed since",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")
    p.add_argument("-n", "--limit", type=parse_count, default=0, help="only the N most recent turns (0 = all)")
    p.set_defaults(func="bot.cli.logs:cmd_export")

    p = verbs.add_parser("purge", parents=[common], help="delete turns older than the retention period")
    p.add_argument(
        "--older-than",
        type=parse_duration,
        metavar="AGE",
        help="e.g. 90d, 12w, 24h; a bare number is days (default: FAQBOT_RETENTION_DAYS, 90)",
    )
    p.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    p.add_argument(
        "--vacuum",
        action="store_true",
        help="then VACUUM to shrink the file (locks the log while it runs: stop the bot or pick a quiet "
        "moment); also switches an older log to incremental auto-vacuum",
    )
    p.set_defaults(func="bot.cli.logs:cmd_purge")

    p = verbs.add_parser(
        "compact", parents=[common], help="convert turns logged before the compact trace format, in place (resumable)"
    )
    p.add_argument("--batch", type=int, default=2000, help="rows per transaction (default 2000)")
    p.set_defaults(func="bot.cli.logs:cmd_compact")

    p = verbs.add_parser("serve", parents=[common], help="browse the log read-only in Datasette")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1); any non-loopback address requires a password",
    )
    p.add_argument("--port", type=parse_port, default=8001, help="port (default 8001)")
    p.add_argument(
        "--require-password",
        action="store_true",
        help="require the password (FAQBOT_REVIEW_PASSWORD) even on a loopback address",
    )
    p.add_argument(
        "--user", default=REVIEW_USER, help=f"login name when a password is required (default {REVIEW_USER})"
    )
    p.set_defaults(func="bot.cli.serve:cmd_serve")

    p = verbs.add_parser("label", parents=[common], help="record a curator's verdict on one turn")
    p.add_argument("turn", help="turn id or a unique prefix")
    p.add_argument("verdict", help=VERDICT_HELP)
    p.add_argument("--entry", metavar="ID", help="for 'entry': the entry that should have answered")
    p.add_argument("--note", help="a short note kept with the verdict")
    p.add_argument("--curator", help="your name (default: FAQBOT_CURATOR, else the OS user)")
    p.add_argument("--knowledge", metavar="DIR", help="knowledge directory to check --entry against")
    p.set_defaults(func="bot.cli.review:cmd_label")

    p = verbs.add_parser(
        "review",
        parents=[common, filters],
        help="interactive review queue: unreviewed gaps first, then the filtered turns",
    )
    p.add_argument("-n", "--limit", type=parse_count, default=0, help="at most N turns this session (0 = all)")
    p.add_argument("--curator", help="your name (default: FAQBOT_CURATOR, else the OS user)")
    p.add_argument("--knowledge", metavar="DIR", help="knowledge directory for entry ids")
    p.set_defaults(func="bot.cli.review:cmd_review")
