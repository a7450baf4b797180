"""`faqbot knowledge suggest` and `faqbot knowledge approve`: curators' reviews become knowledge.

``suggest`` reads the open reviews (``entry`` / ``new-entry`` verdicts not yet applied), prints the diff of the
files it would change or create, the conflicts ``knowledge check`` finds in the new alternates and the
``logs replay`` summary of the log against the changed knowledge, and writes only with ``--write``.
``approve ID`` validates ``drafts/ID.toml`` as it would be served and moves it into ``faq/``; the turns the draft
came from get an "entry ID" review, so they join the regression set (``logs export --reviewed --format eval``).

Exit codes: 0 ok, 1 no database / the knowledge would not load / a draft is not ready, 2 usage error.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bot.cli.logs import _console, _db_path, _Exit, _print_json, _run, _settings, parse_since
from bot.cli.review import curator_name


def _kdir(args, settings) -> Path:
    return Path(args.dir or settings.knowledge_dir)


def _load(kdir: Path):
    from knowledge.loader import KnowledgeError, load_knowledge

    try:
        return load_knowledge(kdir)
    except KnowledgeError as exc:
        raise _Exit(1, str(exc)) from None


def cmd_suggest(args) -> int:
    from bot.answering.answerer import Answerer
    from bot.curation.suggest import plan_suggestions, write_plan
    from knowledge.curation import CurationError
    from knowledge.loader import KnowledgeError
    from storage.db import open_db_sync, utc_iso
    from storage.replay import replay

    settings = _settings()
    kdir = _kdir(args, settings)
    kb = _load(kdir)
    path = _db_path(args, settings)
    if not path.exists():
        raise _Exit(1, f"no conversation log at {path} (set FAQBOT_DB or pass --db)")
    conn = open_db_sync(path, readonly=not args.write)
    try:
        try:
            plan = plan_suggestions(conn, kb, since=None if args.since is None else utc_iso(args.since))
        except KnowledgeError as exc:
            raise _Exit(1, "the suggestions would break the knowledge base; nothing written.\n" + str(exc)) from None
        except CurationError as exc:
            raise _Exit(1, f"cannot edit a knowledge file automatically: {exc}") from None
        if plan.changes and plan.kb is not None:
            plan.replay = replay(conn, Answerer(settings, plan.kb),
                                 since=args.replay_since, limit=None)
        written = []
        if args.write and (plan.changes or plan.review_ids):
            written = write_plan(plan, kdir, conn)
    finally:
        conn.close()

    if args.json:
        _print_json({**plan.as_dict(), "written": [str(p) for p in written], "dry_run": not args.write})
        return 0
    con = _console()
    con.soft_wrap = True  # long lines stay whole (questions, file paths): readable and greppable
    if plan.empty:
        con.print("No suggestions: no open 'entry' / 'new-entry' reviews with something new to add.")
    else:
        sys.stdout.write(plan.diff())
        sys.stdout.flush()
    for s in plan.skipped:
        con.print(f"skipped: {s['question']!r} → {s['faq_id'] or 'new entry'}: {s['reason']}", markup=False, soft_wrap=True)
    if plan.conflicts:
        con.print(f"{len(plan.conflicts)} new alternate(s) score higher against another entry (knowledge check):")
        for c in plan.conflicts:
            con.print(f"  [{c['faq_id']}] '{c['alternate']}' -> {c['other_id']} "
                      f"({c['other_score']:.0f} vs own {c['own_score']:.0f})", markup=False, soft_wrap=True)
    if plan.replay is not None:
        cnt = plan.replay["counts"]
        con.print(f"logs replay with these changes ({plan.replay['replayed']} logged question(s)): "
                  f"improved {cnt['improved']} · regressed {cnt['regressed']} · changed {cnt['changed']} · "
                  f"unchanged {cnt['unchanged']}", soft_wrap=True)
    if plan.drafts:
        con.print(f"{len(plan.drafts)} draft(s) go to {kdir / 'drafts'} (never served): write the answer, then "
                  "`faqbot knowledge approve ID`.")
    if args.write:
        con.print(f"written: {', '.join(str(p) for p in written) or 'nothing'}; "
                  f"{len(plan.review_ids)} review(s) marked applied. Then `faqbot knowledge check` and /reload.")
    elif not plan.empty:
        con.print("Dry run: nothing written. Run again with --write to apply.")
    return 0


def cmd_approve(args) -> int:
    from knowledge.curation import CurationError, approve, check_draft
    from knowledge.loader import KnowledgeError

    settings = _settings()
    kdir = _kdir(args, settings)
    _load(kdir)  # the current knowledge must load before anything is added to it
    curator = curator_name(args, settings)
    try:
        approval = check_draft(kdir, args.id, approver=curator)
    except CurationError as exc:
        raise _Exit(1, str(exc)) from None
    except KnowledgeError as exc:
        raise _Exit(1, f"draft {args.id} is not ready; nothing moved.\n{exc}") from None
    from bot.curation.evaluate import knowledge_conflicts

    conflicts = [c for c in knowledge_conflicts(approval.kb) if args.id in (c["faq_id"], c["other_id"])]
    target = approve(kdir, approval)
    relabelled = _relabel_turns(args, settings, approval.turn_ids, args.id, curator)
    result = {"id": args.id, "file": str(target), "version": approval.kb.version,
              "conflicts": conflicts, "relabelled_turns": relabelled}
    if args.json:
        _print_json(result)
        return 0
    print(f"approved {args.id}: {target} (knowledge version {approval.kb.version}). "
          "Send /reload to the bot (or restart it) to serve it.")
    for c in conflicts:
        print(f"warning: [{c['faq_id']}] '{c['alternate']}' scores higher against {c['other_id']} "
              f"({c['other_score']:.0f} vs own {c['own_score']:.0f})")
    if relabelled:
        print(f"{relabelled} logged turn(s) it came from are now reviewed as entry {args.id} (regression set)")
    return 0


def _relabel_turns(args, settings, turn_ids: list[str], entry_id: str, curator: str) -> int:
    """The turns a draft came from get the verdict 'entry <id>' (when the log is there and has them)."""
    if not turn_ids:
        return 0
    from storage.db import open_db_sync
    from storage.reviews import add_reviews, mark_applied

    path = _db_path(args, settings)
    if not path.exists():
        return 0
    conn = open_db_sync(path, readonly=False)
    try:
        known = [t for t in turn_ids if conn.execute("SELECT 1 FROM turns WHERE id = ?", (t,)).fetchone()]
        rows = add_reviews(conn, known, "entry", curator=curator, faq_id=entry_id, note="draft approved")
        mark_applied(conn, [r["id"] for r in rows])
    finally:
        conn.close()
    return len(rows)


def add_knowledge_verbs(ksub) -> None:
    """`knowledge suggest` and `knowledge approve` (called by bot.cli.main.build_parser)."""
    p = ksub.add_parser("suggest", help="turn open reviews into alternates and draft entries (diff first)")
    p.add_argument("--since", type=parse_since, metavar="WHEN", help="only reviews made since WHEN (7d, ISO date)")
    p.add_argument("--replay-since", type=parse_since, metavar="WHEN", default=None,
                   help="replay only turns since WHEN (default: all)")
    p.add_argument("--write", action="store_true", help="write the changes (default: print them only)")
    p.add_argument("--dir", help="knowledge directory (default: FAQBOT_KNOWLEDGE_DIR or the built-in one)")
    p.add_argument("--db", help="log database (default: FAQBOT_DB)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run(cmd_suggest))

    p = ksub.add_parser("approve", help="validate a draft entry and move it into the knowledge base")
    p.add_argument("id", help="the draft's entry id (knowledge/drafts/ID.toml)")
    p.add_argument("--dir", help="knowledge directory (default: FAQBOT_KNOWLEDGE_DIR or the built-in one)")
    p.add_argument("--db", help="log database, to label the turns the draft came from (default: FAQBOT_DB)")
    p.add_argument("--curator", help="your name (default: FAQBOT_CURATOR, else the OS user)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run(cmd_approve))

