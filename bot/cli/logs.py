"""`faqbot logs …` verbs that read or maintain the conversation log: list, show, search, stats, gaps, replay, export,
purge, compact. (``serve`` is in bot.cli.serve, ``label`` and ``review`` in bot.cli.review, the arguments of all of
them in bot.cli.parser.)

Each verb opens the log, asks ``storage`` for rows and hands them to ``bot.cli.render`` (rich tables for people,
``--json`` for machines). Read verbs open the database read-only (the bot may be writing it at the same time: WAL
lets both proceed). Failures are raised; ``bot.cli.main.main`` prints them.

Exit codes: 0 ok, 1 not found / no database / bad knowledge, 2 usage error (bad arguments, ambiguous id prefix).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from bot.answering.answerer import Answerer
from bot.cli import render
from bot.cli.arguments import parse_since
from bot.cli.errors import FAILED, USAGE, CommandError
from bot.cli.inputs import db_path, no_log, open_log_readonly, settings
from bot.cli.render import print_json
from bot.cli.review import cmd_export_reviewed
from knowledge.loader import load_knowledge
from knowledge.match import matcher_for
from storage import queries
from storage.compact import compact_log, pending_rows
from storage.db import open_db_sync, utc_iso
from storage.export import ExportError, export_to_file, iter_turns, write_export
from storage.gaps import gap_clusters
from storage.purge import purge_old, turns_before
from storage.replay import replay
from storage.reviews import review_stats

GAPS_DEFAULT_SINCE = "30d"  # `logs gaps` window unless --since/--all


def filter_args(args) -> dict[str, Any]:
    """The `logs list` filters (--route, --since, --channel, --feedback) as keyword arguments for storage."""
    return {"route": args.route, "since": args.since, "channel": args.channel, "feedback": args.feedback}


def _limit(args) -> int | None:
    return args.limit if args.limit and args.limit > 0 else None  # -n 0: all (storage takes None as no limit)


def cmd_list(args) -> int:
    conn = open_log_readonly(args)
    try:
        if args.limit is not None and args.limit <= 0:
            # Everything: stream, never hold the log in memory (a year of turns is a million rows).
            rows = queries.iter_turns(conn, **filter_args(args))
            if args.json:
                render.print_json_rows(rows)
            else:
                render.print_turn_stream(rows, "turns, newest first")
            return 0
        rows = queries.list_turns(conn, limit=_limit(args), **filter_args(args))
    finally:
        conn.close()
    render.print_turns(rows, f"{len(rows)} turn(s), newest first", as_json=args.json)
    return 0


def cmd_show(args) -> int:
    conn = open_log_readonly(args)
    try:
        try:
            turn = queries.get_turn(conn, args.id)
        except ValueError as exc:
            raise CommandError(USAGE, str(exc)) from None
    finally:
        conn.close()
    if turn is None:
        raise CommandError(FAILED, f"no turn with id or prefix {args.id!r}")
    if args.json:
        print_json(turn)
    else:
        render.print_turn(turn)
    return 0


def cmd_search(args) -> int:
    conn = open_log_readonly(args)
    try:
        rows = queries.search_turns(conn, args.text, limit=_limit(args))
    finally:
        conn.close()
    render.print_turns(
        rows, render.text(f"{len(rows)} turn(s) containing {args.text!r}, newest first"), as_json=args.json
    )
    return 0


def cmd_stats(args) -> int:
    conn = open_log_readonly(args)
    try:
        s = queries.stats(conn, since=args.since, top=args.top)
        s["reviews"] = review_stats(conn, None if args.since is None else utc_iso(args.since))
    finally:
        conn.close()
    if args.json:
        print_json(s)
    else:
        render.print_stats(s, args.since)
    return 0


def cmd_gaps(args) -> int:
    config = settings()
    kb = load_knowledge(args.knowledge or config.knowledge_dir)
    alt = args.alternate_threshold if args.alternate_threshold is not None else config.clarify_threshold
    conn = open_log_readonly(args)
    try:
        since = None if args.all else (args.since or parse_since(GAPS_DEFAULT_SINCE))
        clusters = gap_clusters(
            conn, matcher_for(kb), since=since, limit=args.limit, threshold=args.similarity, alternate_threshold=alt
        )
    finally:
        conn.close()
    if args.json:
        print_json(clusters)
    else:
        render.print_gaps(clusters, snippets=not args.no_snippets)
    return 0


def cmd_replay(args) -> int:
    config = settings()
    kb = load_knowledge(args.knowledge or config.knowledge_dir)
    answerer = Answerer(config, kb)
    conn = open_log_readonly(args)
    try:
        total = None
        if sys.stderr.isatty():  # the bar's total: one count over the same selection
            where, params = queries.turn_filters(**filter_args(args))
            total = conn.execute(
                "SELECT count(*) FROM turns t" + (" WHERE " + " AND ".join(where) if where else ""), params
            ).fetchone()[0]
            if args.limit and args.limit > 0:
                total = min(total, args.limit)
        with render.Progress("replaying", total) as bar:
            result = replay(conn, answerer, limit=args.limit, progress=bar.advance, **filter_args(args))
    finally:
        conn.close()
    result["knowledge_dir"] = str(kb.directory) if kb.directory else None
    if args.json:
        print_json(result)
    else:
        render.print_replay(result)
    return 0


def cmd_export(args) -> int:
    if args.reviewed or args.format == "eval":
        return cmd_export_reviewed(args)
    conn = open_log_readonly(args)
    try:
        rows = iter_turns(conn, limit=args.limit, **filter_args(args))
        if args.output and args.output != "-":
            out_path = Path(args.output)
            try:
                n = export_to_file(rows, out_path, args.format, db=db_path(args))
            except ExportError as exc:
                raise CommandError(FAILED, str(exc)) from None
            summary = {"rows": n, "format": args.format, "file": str(out_path)}
            if args.json:
                print_json(summary)
            else:
                print(f"exported {n} turn(s) as {args.format} to {render.clip(str(out_path), 200)}")
        else:
            n = write_export(rows, sys.stdout, args.format)
            sys.stdout.flush()
            summary = {"rows": n, "format": args.format, "file": None}
            render.to_stderr(json.dumps(summary) if args.json else f"exported {n} turn(s) as {args.format}")
    finally:
        conn.close()
    return 0


def cmd_purge(args) -> int:
    config = settings()
    path = db_path(args, config)
    older = args.older_than if args.older_than is not None else _dt.timedelta(days=config.retention_days)
    if not os.path.lexists(path):
        raise no_log(path)
    cutoff = utc_iso(_dt.datetime.now(_dt.UTC) - older)

    def size() -> int:
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    before = size()
    if args.dry_run:
        conn = open_db_sync(path, readonly=True)
        try:
            n = turns_before(conn, cutoff)
        finally:
            conn.close()
        result = {
            "dry_run": True,
            "would_delete": n,
            "older_than_days": older.total_seconds() / 86400,
            "cutoff": cutoff,
            "bytes_before": before,
        }
        if args.json:
            print_json(result)
        else:
            print(
                f"dry run: would delete {n} turn(s) older than {render.fmt_days(older)} (before {cutoff}); "
                "nothing deleted"
            )
        return 0
    # create=False: an empty or foreign file is refused (LogSchemaError), never turned into a log.
    conn = open_db_sync(path, readonly=False, create=False)
    try:
        total = turns_before(conn, cutoff)
        with render.Progress("purging", total) as bar:
            done = purge_old(conn, older, vacuum=args.vacuum, progress=bar.advance)
    finally:
        conn.close()
    n = done["deleted"]
    after = size()
    result = {
        "dry_run": False,
        "deleted": n,
        "older_than_days": older.total_seconds() / 86400,
        "cutoff": cutoff,
        "bytes_before": before,
        "bytes_after": after,
        "batches": done["batches"],
        "max_lock_ms": done["max_lock_ms"],
        "vacuum": done["vacuum"],
        **{
            k: done[k]
            for k in (
                "max_delete_lock_ms",
                "max_vacuum_lock_ms",
                "delete_seconds",
                "vacuum_seconds",
                "lock_seconds",
                "checkpoint_seconds",
                "pause_seconds",
                "batch_sizes",
            )
        },
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"deleted {n} turn(s) older than {render.fmt_days(older)} (before {cutoff}) with their feedback and "
            f"reviews; {path}: {render.fmt_bytes(before)} → {render.fmt_bytes(after)}"
        )
    return 0


def cmd_compact(args) -> int:
    path = db_path(args)
    if not path.exists():
        raise no_log(path)
    if args.batch < 1:
        raise CommandError(USAGE, "--batch must be at least 1")
    conn = open_db_sync(path, readonly=False, create=False)  # migrates a log; refuses an empty or foreign file
    try:
        with render.Progress("compacting", pending_rows(conn)) as bar:
            result = compact_log(conn, batch=args.batch, progress=bar.advance)
    finally:
        conn.close()
    if args.json:
        print_json(result)
    else:
        print(
            f"compacted {result['converted']} turn(s) in {result['batches']} batch(es): candidates "
            f"{render.fmt_bytes(result['bytes_before'])} → {render.fmt_bytes(result['bytes_after'])}. The file keeps "
            "its size until the freed pages are reused or `faqbot logs purge --vacuum` runs (see README)."
        )
    return 0
