"""`faqbot knowledge check`, `suggest` and `approve`: the knowledge files are checked, and curators' reviews become
knowledge.

``check`` loads the knowledge as the bot would and reports alternates that score higher against another entry.
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

from bot.answering.answerer import Answerer
from bot.cli.errors import FAILED, CommandError
from bot.cli.inputs import db_path, no_log, settings
from bot.cli.render import console, print_json, print_json_line
from bot.cli.review import curator_name
from bot.curation.evaluate import knowledge_conflicts
from bot.curation.suggest import plan_suggestions, write_plan
from knowledge.curation import CurationError, approve, check_draft
from knowledge.loader import KnowledgeError, load_knowledge
from storage.db import open_db_sync, utc_iso
from storage.replay import replay
from storage.reviews import add_reviews, mark_applied


def _kdir(args, config) -> Path:
    return Path(args.dir or config.knowledge_dir)


def cmd_check(args) -> int:
    """`knowledge check`: with --json the problems go to stdout as JSON too (a script reads one place)."""
    config = settings()
    directory = args.dir or config.knowledge_dir
    try:
        kb = load_knowledge(directory)
    except KnowledgeError as exc:
        if not args.json:
            raise
        print_json_line({"ok": False, "errors": [str(p) for p in exc.problems]})
        return FAILED
    conflicts = knowledge_conflicts(kb)
    if args.json:
        print_json_line(
            {
                "ok": True,
                "version": kb.version,
                "entries": len(kb.entries),
                "alternates": sum(len(e.alternates) for e in kb.entries),
                "warnings": [str(w) for w in kb.warnings],
                "conflicts": conflicts,
            }
        )
        return 0
    print(
        f"OK: {len(kb.entries)} entries, {sum(len(e.alternates) for e in kb.entries)} alternates, version {kb.version}"
    )
    for w in kb.warnings:
        print(f"warning: {w}")
    if conflicts:
        print(f"{len(conflicts)} alternates score higher against another entry:")
        for c in conflicts:
            print(
                f"  {c['file']} [{c['faq_id']}] '{c['alternate']}' -> {c['other_id']} "
                f"({c['other_score']:.0f} vs own {c['own_score']:.0f})"
            )
    else:
        print("No conflicts: every alternate scores highest on its own entry.")
    return 0


def cmd_suggest(args) -> int:
    config = settings()
    kdir = _kdir(args, config)
    kb = load_knowledge(kdir)
    path = db_path(args, config)
    if not path.exists():
        raise no_log(path)
    conn = open_db_sync(path, readonly=not args.write)
    try:
        try:
            plan = plan_suggestions(conn, kb, since=None if args.since is None else utc_iso(args.since))
        except KnowledgeError as exc:
            raise CommandError(
                FAILED, "the suggestions would break the knowledge base; nothing written.\n" + str(exc)
            ) from None
        except CurationError as exc:
            raise CommandError(FAILED, f"cannot edit a knowledge file automatically: {exc}") from None
        if plan.changes and plan.kb is not None:
            plan.replay = replay(conn, Answerer(config, plan.kb), since=args.replay_since, limit=None)
        written = []
        if args.write and (plan.changes or plan.review_ids):
            written = write_plan(plan, kdir, conn)
    finally:
        conn.close()

    if args.json:
        print_json({**plan.as_dict(), "written": [str(p) for p in written], "dry_run": not args.write})
        return 0
    con = console()
    con.soft_wrap = True  # long lines stay whole (questions, file paths): readable and greppable
    if plan.empty:
        con.print("No suggestions: no open 'entry' / 'new-entry' reviews with something new to add.")
    else:
        sys.stdout.write(plan.diff())
        sys.stdout.flush()
    for s in plan.skipped:
        con.print(
            f"skipped: {s['question']!r} → {s['faq_id'] or 'new entry'}: {s['reason']}", markup=False, soft_wrap=True
        )
    if plan.conflicts:
        con.print(f"{len(plan.conflicts)} new alternate(s) score higher against another entry (knowledge check):")
        for c in plan.conflicts:
            con.print(
                f"  [{c['faq_id']}] '{c['alternate']}' -> {c['other_id']} "
                f"({c['other_score']:.0f} vs own {c['own_score']:.0f})",
                markup=False,
                soft_wrap=True,
            )
    if plan.replay is not None:
        cnt = plan.replay["counts"]
        con.print(
            f"logs replay with these changes ({plan.replay['replayed']} logged question(s)): "
            f"improved {cnt['improved']} · regressed {cnt['regressed']} · changed {cnt['changed']} · "
            f"unchanged {cnt['unchanged']}",
            soft_wrap=True,
        )
    if plan.drafts:
        con.print(
            f"{len(plan.drafts)} draft(s) go to {kdir / 'drafts'} (never served): write the answer, then "
            "`faqbot knowledge approve ID`."
        )
    if args.write:
        con.print(
            f"written: {', '.join(str(p) for p in written) or 'nothing'}; "
            f"{len(plan.review_ids)} review(s) marked applied. Then `faqbot knowledge check` and /reload."
        )
    elif not plan.empty:
        con.print("Dry run: nothing written. Run again with --write to apply.")
    return 0


def cmd_approve(args) -> int:
    config = settings()
    kdir = _kdir(args, config)
    load_knowledge(kdir)  # the current knowledge must load before anything is added to it
    curator = curator_name(args, config)
    try:
        approval = check_draft(kdir, args.id, approver=curator)
    except CurationError as exc:
        raise CommandError(FAILED, str(exc)) from None
    except KnowledgeError as exc:
        raise CommandError(FAILED, f"draft {args.id} is not ready; nothing moved.\n{exc}") from None
    conflicts = [c for c in knowledge_conflicts(approval.kb) if args.id in (c["faq_id"], c["other_id"])]
    target = approve(kdir, approval)
    relabelled = _relabel_turns(args, config, approval.turn_ids, args.id, curator)
    result = {
        "id": args.id,
        "file": str(target),
        "version": approval.kb.version,
        "conflicts": conflicts,
        "relabelled_turns": relabelled,
    }
    if args.json:
        print_json(result)
        return 0
    print(
        f"approved {args.id}: {target} (knowledge version {approval.kb.version}). "
        "Send /reload to the bot (or restart it) to serve it."
    )
    for c in conflicts:
        print(
            f"warning: [{c['faq_id']}] '{c['alternate']}' scores higher against {c['other_id']} "
            f"({c['other_score']:.0f} vs own {c['own_score']:.0f})"
        )
    if relabelled:
        print(f"{relabelled} logged turn(s) it came from are now reviewed as entry {args.id} (regression set)")
    return 0


def _relabel_turns(args, config, turn_ids: list[str], entry_id: str, curator: str) -> int:
    """The turns a draft came from get the verdict 'entry <id>' (when the log is there and has them)."""
    if not turn_ids:
        return 0
    path = db_path(args, config)
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
