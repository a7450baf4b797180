"""`faqbot eval` and `faqbot eval-guard`: matching measured on labelled questions, the LLM guard on labelled answers.

Exit codes: 0 ok, 1 a file or the knowledge cannot be read, 3 a threshold given on the command line was missed.
"""

from __future__ import annotations

import sys

from bot.cli.errors import FAILED, MISSED, CommandError
from bot.cli.inputs import settings
from bot.cli.render import print_json_line
from bot.curation import evaluate as matching
from bot.llm import guard_eval
from knowledge.loader import load_knowledge
from prompts.loader import PromptError, load_prompts


def cmd_eval(args) -> int:
    config = settings()
    kb = load_knowledge(config.knowledge_dir)
    try:
        reports = [matching.evaluate(config, kb, f) for f in args.file]
    except matching.LabelledFileError as exc:
        raise CommandError(FAILED, str(exc)) from None
    if args.json:
        print_json_line(reports[0] if len(reports) == 1 else reports)
    else:
        for report in reports:
            matching.render(report)
    problems = [
        p
        for r in reports
        for p in matching.threshold_problems(
            r,
            min_direct=args.min_direct,
            max_wrong=args.max_wrong,
            min_recall=args.min_recall,
            min_useful=args.min_useful,
        )
    ]
    for p in problems:
        print(p, file=sys.stderr)
    return MISSED if problems else 0


def cmd_eval_guard(args) -> int:
    config = settings()
    kb = load_knowledge(config.knowledge_dir)
    try:
        report = guard_eval.evaluate(guard_eval.load(args.file, kb), kb, load_prompts(config.prompts_dir))
    except (OSError, guard_eval.EvalFileError, PromptError) as exc:
        raise CommandError(FAILED, str(exc)) from None
    if args.json:
        print_json_line(report)
    else:
        print(guard_eval.render_report(report))
    shown = max(report["generate"]["fabrications_shown"], report["quote"]["fabrications_shown"])
    if args.max_shown is not None and shown > args.max_shown:
        print(f"{shown} fabrications shown exceed --max-shown {args.max_shown}", file=sys.stderr)
        return MISSED
    rate = report["generate"]["faithful_withheld_rate"] * 100
    if args.max_withheld is not None and rate > args.max_withheld:
        print(
            f"generate mode withholds {rate:.1f}% of faithful answers, above --max-withheld {args.max_withheld}%",
            file=sys.stderr,
        )
        return MISSED
    return 0
