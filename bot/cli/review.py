"""`faqbot logs label` and `faqbot logs review`: curators record a verdict on logged turns.

``label TURN VERDICT [--entry ID] [--note …]`` is for scripts (``--json``); ``review`` is an interactive queue in
the terminal (rich, keyboard only): unreviewed gaps first, then unreviewed turns matching the ``logs list``
filters. Every key press that labels a turn is committed at once, so quitting and starting again resumes where
the curator stopped (skipped turns come back next time). Verdicts and their meaning: ``storage/reviews.py``.

Keys are read by ``bot.cli.keys.KeyInput`` (``printf '14q' | faqbot logs review`` labels two turns and quits).
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot.cli.errors import FAILED, USAGE, CommandError
from bot.cli.inputs import db_path, open_log_for_writing, open_log_readonly, settings
from bot.cli.keys import KeyInput
from bot.cli.render import FEEDBACK_MARK, clip, console, print_json, short_ts, text, to_stderr
from bot.curation.suggest import eval_jsonl, eval_rows
from knowledge.loader import load_knowledge
from storage import queries
from storage.db import utc_iso
from storage.export import ExportError, write_file_safely
from storage.reviews import ReviewError, add_review, check_verdict, queue, queue_size
from storage.safe_text import json_for_terminal

KEYS = {"1": "correct", "2": "entry", "3": "new-entry", "4": "out-of-scope", "5": "spam"}
VERDICT_LABELS = {
    "correct": "correct",
    "entry": "should be entry …",
    "new-entry": "needs a new entry",
    "out-of-scope": "out of scope (declining was right)",
    "spam": "spam / abuse",
}


def curator_name(args, config) -> str:
    """--curator, else FAQBOT_CURATOR, else the OS user name."""
    name = getattr(args, "curator", None) or config.curator
    if not name:
        try:
            name = getpass.getuser()
        except Exception:  # no user name in this environment (e.g. a container without /etc/passwd entry)
            name = ""
    name = (name or "").strip()
    if not name:
        raise CommandError(USAGE, "no curator name: set FAQBOT_CURATOR or pass --curator")
    return name[:80]


def _check_entry(kb, faq_id: str | None) -> None:
    if faq_id and kb.get(faq_id) is None:
        raise CommandError(
            USAGE,
            f"unknown entry {faq_id!r} (see `faqbot knowledge check`; ids: {', '.join(e.id for e in kb.entries)})",
        )


def cmd_label(args) -> int:
    config = settings()
    try:
        verdict, faq_id = check_verdict(args.verdict, args.entry)
    except ReviewError as exc:
        raise CommandError(USAGE, str(exc)) from None
    if verdict == "entry":
        _check_entry(load_knowledge(args.knowledge or config.knowledge_dir), faq_id)
    curator = curator_name(args, config)
    conn = open_log_for_writing(args, config)
    try:
        try:
            turn = queries.get_turn(conn, args.turn)
        except ValueError as exc:
            raise CommandError(USAGE, str(exc)) from None
        if turn is None:
            raise CommandError(FAILED, f"no turn with id or prefix {args.turn!r}")
        try:
            row = add_review(conn, turn["turn_id"], verdict, curator=curator, faq_id=faq_id, note=args.note)
        except ReviewError as exc:
            raise CommandError(USAGE, str(exc)) from None
    finally:
        conn.close()
    if args.json:
        print_json(row)
    else:
        print(f"{row['turn_id']}: {verdict}{' ' + faq_id if faq_id else ''} by {curator} at {short_ts(row['ts'])} UTC")
    return 0


# --------------------------------------------------------------------------------------------- review queue
def _turn_panel(turn: dict[str, Any], pos: int, total: int, part: str):
    head = Text()
    head.append(f"{pos}/{total} ", style="bold")
    head.append("gap " if part == "gap" else "", style="yellow")
    # Logged text is attacker-chosen: _t strips terminal escapes and never parses markup.
    head.append(text(f"{turn['turn_id']} · {short_ts(turn['ts'])} UTC · {turn['channel']} · route {turn['route']}"))
    if turn.get("score") is not None:
        head.append(f" · score {turn['score']:.0f}")
    if turn.get("faq_id"):
        head.append(text(f" · answered from {turn['faq_id']}"))
    fb = turn.get("feedback")
    if fb:
        head.append(text(f" · feedback {FEEDBACK_MARK.get(fb, fb)}"))
    body = Table.grid(padding=(0, 1))
    body.add_column(style="bold", no_wrap=True)
    body.add_column(overflow="fold")
    body.add_row("question", text(turn.get("question")))
    body.add_row("answer", text(clip(turn.get("answer"), 300)))
    if turn.get("guard"):
        body.add_row("guard", text(turn["guard"]))
    cands = Table.grid(padding=(0, 1))
    for i, c in enumerate(turn.get("candidates") or [], 1):
        cands.add_row(
            f"[{i}]", text(c.get("faq_id")), f"{float(c.get('score') or 0):.0f}", Text(clip(c.get("question"), 50))
        )
    parts: list[Any] = [head, body]
    if turn.get("candidates"):
        parts += [Text("candidates (for 2 = should be entry …):", style="dim"), cands]
    return Panel(Group(*parts), title="review", title_align="left")


HELP_LINE = (
    "[bold]1[/] correct  [bold]2[/] entry…  [bold]3[/] new entry  [bold]4[/] out of scope  "
    "[bold]5[/] spam  [bold]n[/] note  [bold]s[/] skip  [bold]q[/] quit"
)


def _pick_entry(keys: KeyInput, con, kb, turn: dict[str, Any]) -> str | None:
    cands = turn.get("candidates") or []
    while True:
        text = keys.line("entry (candidate number or entry id, Enter = cancel): ")
        if text is None or not text.strip():
            return None
        text = text.strip()
        if text.isdecimal() and 1 <= int(text) <= len(cands):
            return str(cands[int(text) - 1]["faq_id"])
        if kb.get(text) is not None:
            return text
        con.print(f"[red]unknown entry {text!r}[/]; ids: {', '.join(e.id for e in kb.entries)}")


def cmd_review(args) -> int:
    config = settings()
    kb = load_knowledge(args.knowledge or config.knowledge_dir)
    curator = curator_name(args, config)
    conn = open_log_for_writing(args, config)
    con = console()
    keys = KeyInput()
    done: list[dict[str, Any]] = []
    skipped = 0
    try:
        selected = dict(route=args.route, since=args.since, channel=args.channel, feedback=args.feedback)
        # One page of the queue per session (QUEUE_PAGE, or -n): a year of traffic is a million unreviewed turns.
        items = queue(conn, **selected, limit=args.limit if args.limit and args.limit > 0 else None)
        if not items:
            con.print("Nothing to review: every selected turn has a verdict.")
            return 0
        total = queue_size(conn, **selected)
        con.print(
            f"{total} turn(s) to review as [bold]{curator}[/] — unreviewed gaps first"
            + (f", {len(items)} in this session" if len(items) < total else "")
            + ". Labels are saved at once; q quits, start again to resume."
        )
        with keys.active():
            quit_ = False
            for pos, item in enumerate(items, 1):
                turn = queries.get_turn(conn, item["turn_id"])
                if turn is None or turn.get("reviews"):  # purged, or labelled meanwhile by someone else
                    continue
                con.print(_turn_panel(turn, pos, len(items), item["part"]))
                note: str | None = None
                while True:
                    con.print(HELP_LINE + (f"  · note: {note}" if note else ""))
                    k = keys.key()
                    if k in ("", "q", "Q", "\x1b", "\x04"):
                        quit_ = True
                        break
                    if k in ("s", "S", " "):
                        skipped += 1
                        con.print("[dim]skipped[/]")
                        break
                    if k in ("n", "N"):
                        note = keys.line("note: ") or None
                        continue
                    verdict = KEYS.get(k)
                    if verdict is None:
                        con.print(f"[dim]key {k!r} does nothing here[/]")
                        continue
                    faq_id = None
                    if verdict == "entry":
                        faq_id = _pick_entry(keys, con, kb, turn)
                        if faq_id is None:
                            continue
                    try:
                        row = add_review(conn, turn["turn_id"], verdict, curator=curator, faq_id=faq_id, note=note)
                    except ReviewError as exc:
                        con.print(f"[red]{exc}[/]")
                        continue
                    done.append(row)
                    con.print(f"[green]✓ {VERDICT_LABELS[verdict].replace('…', faq_id or '')}[/]")
                    break
                if quit_:
                    break
        left = queue_size(conn, **selected)
    finally:
        conn.close()
    summary = {"labelled": len(done), "skipped": skipped, "left": left, "curator": curator}
    if args.json:
        print_json({**summary, "reviews": done})
    else:
        con.print(f"labelled {len(done)}, skipped {skipped}; {left} turn(s) still without a verdict")
    return 0


# --------------------------------------------------------------------------------------------- export
def cmd_export_reviewed(args) -> int:
    """`logs export --reviewed --format eval`: reviewed turns as eval rows, one per distinct question."""
    if not (args.reviewed and args.format == "eval"):
        raise CommandError(USAGE, "the eval format holds reviewed turns: use --reviewed --format eval")
    config = settings()
    kb = load_knowledge(config.knowledge_dir)
    conn = open_log_readonly(args)
    try:
        rows, skipped = eval_rows(conn, kb, since=None if args.since is None else utc_iso(args.since))
    finally:
        conn.close()
    body = eval_jsonl(rows)
    summary = {
        "rows": len(rows),
        "format": "eval",
        "skipped": dict(skipped),
        "file": None if not args.output or args.output == "-" else args.output,
    }
    if summary["file"]:
        try:  # never onto the log itself; a temporary file renamed when complete
            write_file_safely(args.output, lambda fh: fh.write(body), db=db_path(args, config))
        except ExportError as exc:
            raise CommandError(FAILED, str(exc)) from None
    else:
        sys.stdout.write(json_for_terminal(body))
        sys.stdout.flush()
    note = (
        f"exported {len(rows)} reviewed question(s) in the eval format"
        + (f" to {args.output}" if summary["file"] else "")
        + ("; left out: " + ", ".join(f"{k} {v}" for k, v in skipped.items()) if skipped else "")
    )
    if args.json:
        (print_json if summary["file"] else lambda s: to_stderr(json.dumps(s, ensure_ascii=False)))(summary)
    elif summary["file"]:
        print(note)
    else:
        to_stderr(note)
    return 0
