"""`faqbot logs …`: the curators' review of the conversation log.

Verbs: list, show, search, stats, gaps, replay, export, purge, serve. Rich tables for people, ``--json`` for
machines on every verb. Read verbs open the database read-only (the bot may be writing it at the same time:
WAL lets both proceed). Imports are lazy so that building the `faqbot` parser stays cheap.

Exit codes: 0 ok, 1 not found / no database / bad knowledge, 2 usage error (bad arguments, ambiguous id prefix,
`serve` refused without a password).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import ipaddress
import json
import os
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

from bot.answering.types import Route
from bot.cli import datasette_process
from storage import DATASETTE_DIR

FEEDBACK = ("up", "down", "none", "any")
REVIEW_USER = "curator"
PASSWORD_HASH_ENV = "FAQBOT_REVIEW_PASSWORD_HASH"
METADATA_FILE = DATASETTE_DIR / "metadata.yml"
NO_LIMIT = 1 << 62
GAPS_DEFAULT_SINCE = "30d"  # `logs gaps` window unless --since/--all

# --------------------------------------------------------------------------------------------- parsing helpers
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


MAX_DAYS = 36_525  # 100 years: any longer duration or age is a typo (and would overflow the date arithmetic)
MAX_COUNT = 1_000_000_000


def parse_duration(text: str, default_unit: str = "d") -> _dt.timedelta:
    """'90d', '24h', '30m', '2w', '45s'; a bare number is in ``default_unit``. At most 100 years."""
    m = _DURATION_RE.match(text or "")
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90d, 24h, 30m, 2w)")
    unit = _UNITS[(m.group(2) or default_unit).lower()]
    try:
        td = _dt.timedelta(**{unit: float(m.group(1))})
    except OverflowError:
        td = None
    if td is None or td > _dt.timedelta(days=MAX_DAYS):
        raise argparse.ArgumentTypeError(f"too long: {text!r} (at most {MAX_DAYS} days, 100 years)")
    return td


def parse_count(text: str) -> int:
    """A row or cluster count for -n / --top: 0 (all) up to MAX_COUNT."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= n <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"out of range: {text} (use 0 for all, or up to {MAX_COUNT:,})")
    return n


def parse_port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < n < 65536:
        raise argparse.ArgumentTypeError(f"not a port number: {text} (1-65535)")
    return n


def parse_since(text: str) -> _dt.datetime:
    """A duration back from now ('7d', '24h') or an ISO date/time ('2025-03-01', '2025-03-01T08:00+08:00').

    A date or time without an offset is UTC, like the timestamps in the log."""
    if _DURATION_RE.match(text or ""):
        return _dt.datetime.now(_dt.timezone.utc) - parse_duration(text)
    try:
        when = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use e.g. 7d, 24h, 2025-03-01 or 2025-03-01T08:00:00+08:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    try:
        return when.astimezone(_dt.timezone.utc)
    except OverflowError:
        raise argparse.ArgumentTypeError(f"not a usable time: {text!r}") from None


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; any other address or name counts as reachable by others."""
    h = (host or "").strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------- output helpers
def _settings():
    from bot.app.settings import Settings

    return Settings()


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _print_json(obj: Any) -> None:
    from storage.safe_text import json_for_terminal

    sys.stdout.write(json_for_terminal(json.dumps(obj, ensure_ascii=False, indent=2, default=str)) + "\n")


def _t(value: Any):
    """A table cell or line from logged data: a rich ``Text`` (never parsed as markup, so "[link=…]" in a question
    stays text) without terminal escapes or control characters."""
    from rich.text import Text

    from storage.safe_text import for_terminal

    return Text(for_terminal(value))


def _err(msg: str) -> None:
    sys.stderr.write(msg.rstrip("\n") + "\n")


class _Progress:
    """A rich progress bar on stderr, shown only when stderr is a terminal (never in pipes, files or --json use)."""

    def __init__(self, description: str, total: int | None):
        self._bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_json_rows(rows) -> int:
    """A JSON array written row by row as the rows come (bounded memory on any log size); returns the count."""
    from storage.safe_text import json_for_terminal

    out = sys.stdout
    n = 0
    out.write("[")
    for row in rows:
        out.write(("\n  " if n == 0 else ",\n  ")
                  + json_for_terminal(json.dumps(row, ensure_ascii=False, default=str)))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def _db_path(args, settings=None) -> Path:
    if args.db:
        return Path(args.db)
    return Path((settings or _settings()).db)


class _Exit(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _open_ro(args):
    from storage.db import open_db_sync

    path = _db_path(args)
    try:
        return open_db_sync(path, readonly=True)
    except FileNotFoundError:
        raise _Exit(1, f"no conversation log at {path} (set FAQBOT_DB or pass --db)") from None
    except sqlite3.DatabaseError as exc:
        from bot.cli.errors import describe

        raise _Exit(*describe(exc, db=path)) from None


def _short_ts(ts: str | None) -> str:
    return (ts or "")[:19].replace("T", " ")


def _clip(text: str | None, n: int) -> str:
    from storage.safe_text import for_terminal

    t = " ".join(for_terminal(text).split())
    return t if len(t) <= n else t[: n - 1] + "…"


_FEEDBACK_MARK = {"up": "👍", "down": "👎", "none": "∅", None: ""}  # ∅ = "none of these" (都不是)


def _run(fn):
    """Wrap a verb: map _Exit to its exit code and message."""

    def wrapper(args) -> int:
        from storage.db import LogSchemaError
        from storage.safety import UnsafeFileError

        try:
            return int(fn(args) or 0)
        except _Exit as exc:
            _err(str(exc))
            return exc.code
        except (LogSchemaError, UnsafeFileError) as exc:
            _err(f"faqbot: {exc}")
            return 1
        except sqlite3.Error as exc:  # other errors go up to bot.cli.main.main, which prints them in one line too
            from bot.cli.errors import describe

            code, message = describe(exc, db=_db_path(args))
            _err(message)
            return code

    wrapper.__name__ = fn.__name__
    return wrapper


def _filters(args) -> dict[str, Any]:
    return {"route": args.route, "since": args.since, "channel": args.channel, "feedback": args.feedback}


def _limit(args) -> int:
    return NO_LIMIT if args.limit is not None and args.limit <= 0 else args.limit


# --------------------------------------------------------------------------------------------- verbs
def _turns_table(rows: list[dict[str, Any]], title: str, *, header: bool = True, fixed: bool = False):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # Sized to fit 80 columns: wider content would be cropped, not wrapped. `fixed`: every column but the question
    # has a fixed width, so tables printed one chunk at a time line up.
    def w(n: int) -> dict[str, int]:
        return {"width": n} if fixed else {}

    t = Table(title=title or None, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
              collapse_padding=True, show_header=header)
    t.add_column("id", no_wrap=True, **w(20))
    t.add_column("time UTC", no_wrap=True, **w(11))
    t.add_column("channel", no_wrap=True, max_width=8, overflow="ellipsis", **w(8))
    t.add_column("route", no_wrap=True, **w(7))
    t.add_column("score", justify="right", no_wrap=True, **w(5))
    t.add_column("fb", no_wrap=True, **w(2))
    t.add_column("question → entry", ratio=1, overflow="fold")
    for r in rows:
        q = Text(_clip(r.get("question"), 80) or ("(error)" if r.get("error") else ""))
        if r.get("faq_id"):
            q.append(f" → {_clip(r['faq_id'], 40)}", style="dim")
        t.add_row(
            _t(r["turn_id"]), _t(_short_ts(r["ts"])[5:16]), _t(r["channel"]), _t(r["route"]),
            "" if r.get("score") is None else f"{r['score']:.0f}",
            _FEEDBACK_MARK.get(r.get("feedback"), r.get("feedback") or ""), q,
        )
    return t


def cmd_list(args) -> int:
    from storage import queries

    conn = _open_ro(args)
    try:
        if args.limit is not None and args.limit <= 0:
            # Everything: stream, never hold the log in memory (a year of turns is a million rows).
            rows = queries.iter_turns(conn, **_filters(args))
            if args.json:
                _print_json_rows(rows)
            else:
                _print_table_stream(rows, "turns, newest first")
            return 0
        rows = queries.list_turns(conn, limit=_limit(args), **_filters(args))
    finally:
        conn.close()
    return _print_turns(args, rows, f"{len(rows)} turn(s), newest first")


def _cells(text: str, width: int) -> str:
    """``text`` cut and padded to ``width`` terminal cells (CJK characters take two)."""
    from rich.cells import cell_len, set_cell_size

    return set_cell_size(text, width) if cell_len(text) != width else text


def _print_table_stream(rows, title: str) -> int:
    """Every turn as one fixed-width line, printed as it comes (a rich table would hold and measure all rows)."""
    out = sys.stdout
    out.write(f"{title}\n{'id':<20}  {'time UTC':<11}  {'channel':<8}  {'route':<7}  score  fb  question → entry\n")
    n = 0
    for r in rows:
        q = _clip(r.get("question"), 80) or ("(error)" if r.get("error") else "")
        if r.get("faq_id"):
            q += f" → {_clip(r['faq_id'], 40)}"
        score = "" if r.get("score") is None else f"{r['score']:.0f}"
        mark = _clip(_FEEDBACK_MARK.get(r.get("feedback"), r.get("feedback") or ""), 2)
        out.write(f"{_clip(r['turn_id'], 32):<20}  {_clip(_short_ts(r['ts'])[5:16], 11):<11}  "
                  f"{_cells(_clip(r['channel'], 8), 8)}  {_clip(r['route'], 7):<7}  {score:>5}  {_cells(mark, 2)}  {q}\n")
        n += 1
    out.write(f"{n} turn(s)\n")
    return n


def _print_turns(args, rows: list[dict], title: str) -> int:
    """A list of turns as JSON (--json) or as a table; shared by `list` and `search`."""
    if args.json:
        _print_json(rows)
    else:
        _console().print(_turns_table(rows, title))
    return 0


def cmd_show(args) -> int:
    from storage import queries

    conn = _open_ro(args)
    try:
        try:
            turn = queries.get_turn(conn, args.id)
        except ValueError as exc:
            raise _Exit(2, str(exc)) from None
    finally:
        conn.close()
    if turn is None:
        raise _Exit(1, f"no turn with id or prefix {args.id!r}")
    if args.json:
        _print_json(turn)
        return 0
    from rich.table import Table

    con = _console()
    conv = turn.get("conversation") or {}
    t = Table(title=_t(f"turn {turn['turn_id']}"), title_justify="left", show_header=False, show_lines=True)
    t.add_column("field", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")
    masked = ", ".join(f"{k} {turn.get('masked_' + k)}" for k in ("id", "phone", "bank") if turn.get("masked_" + k))
    fields = [
        ("time (UTC)", turn["ts"]),
        ("channel", f"{turn['channel']} · via {turn.get('via') or '-'} · chat {conv.get('chat_type') or '-'}"
                    f" · user {(conv.get('user_hash') or '-')[:12]}"),
        ("question", turn.get("question")),
        ("normalized", turn.get("normalized")),
        ("route", turn["route"]),
        ("entry", f"{turn.get('faq_id') or '-'} (section {turn.get('section')})" if turn.get("faq_id") else "-"),
        ("score", "" if turn.get("score") is None else f"{turn['score']:.1f}"),
        ("context ids", ", ".join(turn.get("context_ids") or []) or "-"),
        ("model", turn.get("model") or "-"),
        ("guard", turn.get("guard") or "-"),
        ("raw LLM output", turn.get("llm_raw") or "-"),
        ("answer", turn.get("answer")),
        ("latency", "" if turn.get("latency_ms") is None else f"{turn['latency_ms']:.1f} ms"),
        ("knowledge", turn.get("knowledge_version") or "-"),
        ("error", turn.get("error") or "-"),
        ("masked", masked or "-"),
        ("feedback", ", ".join(f"{_FEEDBACK_MARK.get(f['kind'], f['kind'])} {_short_ts(f['ts'])}"
                               for f in turn.get("feedback_events") or []) or "-"),
    ]
    for name, value in fields:
        t.add_row(name, _t(value))
    con.print(t)
    if turn.get("candidates"):
        c = Table(title="candidates", title_justify="left")
        # Compact rows (storage.trace) keep no entry question: the column is shown only for older rows.
        cols = ("entry", "section", "score") + (("question",) if any(x.get("question") for x in turn["candidates"])
                                               else ())
        for col in cols:
            c.add_column(col, justify="right" if col == "score" else "left")
        for cand in turn["candidates"]:
            c.add_row(_t(cand.get("faq_id")), _t(cand.get("section")), f"{float(cand.get('score') or 0):.1f}",
                      *([_t(cand.get("question"))] if len(cols) == 4 else []))
        con.print(c)
    if turn.get("reviews"):
        rv = Table(title="reviews", title_justify="left")
        for col in ("status", "label", "note", "reviewer", "time"):
            rv.add_column(col)
        for r in turn["reviews"]:
            label = (r["label"] or "") + (f" {r['faq_id']}" if r.get("faq_id") else "")
            rv.add_row(_t(r["status"]), _t(label), _t(r["note"]), _t(r["reviewer"]), _t(_short_ts(r["ts"])))
        con.print(rv)
    return 0


def cmd_search(args) -> int:
    from storage import queries

    conn = _open_ro(args)
    try:
        rows = queries.search_turns(conn, args.text, limit=_limit(args))
    finally:
        conn.close()
    return _print_turns(args, rows, _t(f"{len(rows)} turn(s) containing {args.text!r}, newest first"))


def cmd_stats(args) -> int:
    from storage import queries
    from storage.db import utc_iso
    from storage.reviews import review_stats

    conn = _open_ro(args)
    try:
        s = queries.stats(conn, since=args.since, top=args.top)
        s["reviews"] = review_stats(conn, None if args.since is None else utc_iso(args.since))
    finally:
        conn.close()
    if args.json:
        _print_json(s)
        return 0
    from rich.table import Table

    con = _console()

    def ms(v):
        return "-" if v is None else f"{v:.0f} ms"

    t = Table(title="conversation log" + (f" since {_short_ts(args.since.isoformat())} UTC" if args.since else ""),
              title_justify="left", show_header=False)
    t.add_column("metric", style="bold")
    t.add_column("value", justify="right")
    for name, value in (
        ("turns", s["total"]),
        ("answered directly (faq)", f"{s['direct_rate']:.1%}"),
        ("👍 thumbs up", s["thumbs_up"]),
        ("👎 thumbs down", s["thumbs_down"]),
        ("none of these (都不是)", s["none_of_these"]),
        ("LLM guard failures", s["guard_failures"]),
        ("errors", s["errors"]),
        ("latency p50", ms(s["latency_p50_ms"])),
        ("latency p95", ms(s["latency_p95_ms"])),
        *_review_rows(s.get("reviews")),
    ):
        t.add_row(name, str(value))
    con.print(t)
    for title, data in (("by route", s["by_route"]), ("by channel", s["by_channel"])):
        tt = Table(title=title, title_justify="left")
        tt.add_column(title.split()[-1])
        tt.add_column("turns", justify="right")
        for k, v in data.items():
            tt.add_row(_t(k), str(v))
        con.print(tt)
    if s["top_entries"]:
        te = Table(title="most asked entries (answered directly)", title_justify="left")
        te.add_column("entry")
        te.add_column("turns", justify="right")
        for e in s["top_entries"]:
            te.add_row(_t(e["faq_id"]), str(e["count"]))
        con.print(te)
    return 0


def _review_rows(r: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The curators' verdicts as rows of the stats table (see storage.reviews.review_stats)."""
    if not r:
        return []
    verdicts = ", ".join(f"{k} {v}" for k, v in r["by_verdict"].items()) or "-"
    return [
        ("reviewed turns", f"{r['reviewed']} ({verdicts})"),
        ("direct answers confirmed correct", f"{r['direct_confirmed']} of {r['direct_reviewed']} reviewed"),
        ("reviews waiting for a knowledge change", r["open"]),
    ]


def _load_kb(directory):
    from knowledge.loader import KnowledgeError, load_knowledge

    try:
        return load_knowledge(directory)
    except KnowledgeError as exc:
        raise _Exit(1, str(exc)) from None


def cmd_gaps(args) -> int:
    from knowledge.match import Matcher
    from storage.gaps import gap_clusters

    settings = _settings()
    kb = _load_kb(args.knowledge or settings.knowledge_dir)
    alt = args.alternate_threshold if args.alternate_threshold is not None else settings.clarify_threshold
    conn = _open_ro(args)
    try:
        since = None if args.all else (args.since or parse_since(GAPS_DEFAULT_SINCE))
        clusters = gap_clusters(conn, Matcher(kb), since=since, limit=args.limit,
                                threshold=args.similarity, alternate_threshold=alt)
    finally:
        conn.close()
    if args.json:
        _print_json(clusters)
        return 0
    con = _console()
    if not clusters:
        con.print("The gap inbox is empty: no clarify/none turns, guard failures, thumbs-down or none-of-these.")
        return 0
    from rich.markup import escape as _escape

    from storage.safe_text import for_terminal

    def escape(text):
        return _escape(for_terminal(text))

    for i, c in enumerate(clusters, 1):
        n = c["nearest"]
        near = (f"nearest: {n['faq_id']} (section {n['section']}, score {n['score']:.0f}) {n['question']}"
                if n else "nearest: -")
        con.print(f"[bold]{c['count']}×[/bold] {escape(c['representative'])} — {escape(near)}")
        routes = ", ".join(f"{k} {v}" for k, v in c["routes"].items())
        reasons = ", ".join(f"{k} {v}" for k, v in c["reasons"].items())
        con.print(f"   routes: {escape(routes)} · why: {escape(reasons)} · last {escape(_short_ts(c['last_seen']))} UTC")
        others = [q for q in c["examples"] if q != c["representative"]]
        if others:
            con.print("   also asked: " + escape(" · ".join(others)))
        if not args.no_snippets:
            con.print(_t(f"   suggestion: {c['suggestion']}"), style="dim")
            for line in c["snippet"].splitlines():
                con.print(_t("   " + line))
        if i < len(clusters):
            con.print()
    return 0


def cmd_replay(args) -> int:
    from bot.answering.answerer import Answerer
    from storage.replay import replay

    settings = _settings()
    kb = _load_kb(args.knowledge or settings.knowledge_dir)
    answerer = Answerer(settings, kb)
    conn = _open_ro(args)
    try:
        total = None
        if sys.stderr.isatty():  # the bar's total: one count over the same selection
            from storage.queries import turn_filters

            where, params = turn_filters(**_filters(args))
            total = conn.execute("SELECT count(*) FROM turns t" + (" WHERE " + " AND ".join(where) if where else ""),
                                 params).fetchone()[0]
            if args.limit and args.limit > 0:
                total = min(total, args.limit)
        with _Progress("replaying", total) as bar:
            result = replay(conn, answerer, limit=args.limit, progress=bar.advance, **_filters(args))
    finally:
        conn.close()
    result["knowledge_dir"] = str(kb.directory) if kb.directory else None
    if args.json:
        _print_json(result)
        return 0
    from collections import Counter

    from rich.table import Table

    con = _console()
    cnt = result["counts"]
    con.print(
        f"Replayed {result['replayed']} of {result['selected']} turn(s) against knowledge {result['knowledge_version']}"
        f" ({result['knowledge_dir']}); skipped {result['skipped']} (buttons, choices, no question)."
    )
    con.print(f"improved {cnt['improved']} · regressed {cnt['regressed']} · changed {cnt['changed']} · "
              f"unchanged {cnt['unchanged']}")
    if not result["changes"]:
        return 0
    grouped: Counter = Counter()
    for ch in result["changes"]:
        old = ch["old_route"] + (f" {ch['old_faq_id']}" if ch["old_faq_id"] else "")
        new = ch["new_route"] + (f" {ch['new_faq_id']}" if ch["new_faq_id"] else "")
        if ch["answer_changed"]:
            new += " (answer edited)"
        grouped[(ch["kind"], ch["question"], old, new)] += 1
    order = {"regressed": 0, "changed": 1, "improved": 2}
    t = Table(title="would change", title_justify="left")
    for col in ("kind", "×", "question", "old", "new"):
        t.add_column(col, overflow="fold", justify="right" if col == "×" else "left")
    style = {"regressed": "red", "improved": "green", "changed": "yellow"}
    for (kind, q, old, new), n in sorted(grouped.items(), key=lambda kv: (order[kv[0][0]], -kv[1])):
        t.add_row(f"[{style[kind]}]{kind}[/]", str(n), _t(_clip(q, 50)), _t(old), _t(new))
    con.print(t)
    return 0


def cmd_export(args) -> int:
    from storage.export import ExportError, export_to_file, iter_turns, write_export

    if args.reviewed or args.format == "eval":
        from bot.cli.review import cmd_export_reviewed  # curators' verdicts as a regression set

        return cmd_export_reviewed(args)
    conn = _open_ro(args)
    try:
        rows = iter_turns(conn, limit=args.limit, **_filters(args))
        if args.output and args.output != "-":
            out_path = Path(args.output)
            try:
                n = export_to_file(rows, out_path, args.format, db=_db_path(args))
            except ExportError as exc:
                raise _Exit(1, str(exc)) from None
            summary = {"rows": n, "format": args.format, "file": str(out_path)}
            if args.json:
                _print_json(summary)
            else:
                print(f"exported {n} turn(s) as {args.format} to {_clip(str(out_path), 200)}")
        else:
            n = write_export(rows, sys.stdout, args.format)
            sys.stdout.flush()
            summary = {"rows": n, "format": args.format, "file": None}
            _err(json.dumps(summary) if args.json else f"exported {n} turn(s) as {args.format}")
    finally:
        conn.close()
    return 0


def cmd_purge(args) -> int:
    from storage.db import open_db_sync, utc_iso

    settings = _settings()
    path = _db_path(args, settings)
    older = args.older_than if args.older_than is not None else _dt.timedelta(days=settings.retention_days)
    if not os.path.lexists(path):
        raise _Exit(1, f"no conversation log at {path} (set FAQBOT_DB or pass --db)")
    cutoff = utc_iso(_dt.datetime.now(_dt.timezone.utc) - older)

    def size() -> int:
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    before = size()
    if args.dry_run:
        conn = open_db_sync(path, readonly=True)
        try:
            n = conn.execute("SELECT count(*) FROM turns WHERE ts < ?", (cutoff,)).fetchone()[0]
        finally:
            conn.close()
        result = {"dry_run": True, "would_delete": n, "older_than_days": older.total_seconds() / 86400,
                  "cutoff": cutoff, "bytes_before": before}
        if args.json:
            _print_json(result)
        else:
            print(f"dry run: would delete {n} turn(s) older than {_fmt_days(older)} (before {cutoff}); "
                  "nothing deleted")
        return 0
    from storage.purge import purge_old

    # create=False: an empty or foreign file is refused (LogSchemaError), never turned into a log.
    conn = open_db_sync(path, readonly=False, create=False)
    try:
        total = conn.execute("SELECT count(*) FROM turns WHERE ts < ?", (cutoff,)).fetchone()[0]
        with _Progress("purging", total) as bar:
            done = purge_old(conn, older, vacuum=args.vacuum, progress=bar.advance)
    finally:
        conn.close()
    n = done["deleted"]
    after = size()
    result = {"dry_run": False, "deleted": n, "older_than_days": older.total_seconds() / 86400, "cutoff": cutoff,
              "bytes_before": before, "bytes_after": after, "batches": done["batches"],
              "max_lock_ms": done["max_lock_ms"], "vacuum": done["vacuum"],
              **{k: done[k] for k in ("max_delete_lock_ms", "max_vacuum_lock_ms", "delete_seconds", "vacuum_seconds",
                                      "lock_seconds", "checkpoint_seconds", "pause_seconds", "batch_sizes")}}
    if args.json:
        _print_json(result)
    else:
        print(f"deleted {n} turn(s) older than {_fmt_days(older)} (before {cutoff}) with their feedback and "
              f"reviews; {path}: {_fmt_bytes(before)} → {_fmt_bytes(after)}")
    return 0


def cmd_compact(args) -> int:
    from storage.compact import compact_log, pending_rows
    from storage.db import open_db_sync

    path = _db_path(args)
    if not path.exists():
        raise _Exit(1, f"no conversation log at {path} (set FAQBOT_DB or pass --db)")
    if args.batch < 1:
        raise _Exit(2, "--batch must be at least 1")
    conn = open_db_sync(path, readonly=False, create=False)  # migrates a log; refuses an empty or foreign file
    try:
        with _Progress("compacting", pending_rows(conn)) as bar:
            result = compact_log(conn, batch=args.batch, progress=bar.advance)
    finally:
        conn.close()
    if args.json:
        _print_json(result)
    else:
        print(f"compacted {result['converted']} turn(s) in {result['batches']} batch(es): candidates "
              f"{_fmt_bytes(result['bytes_before'])} → {_fmt_bytes(result['bytes_after'])}. The file keeps its size "
              "until the freed pages are reused or `faqbot logs purge --vacuum` runs (see README).")
    return 0


def _fmt_days(td: _dt.timedelta) -> str:
    days = td.total_seconds() / 86400
    return f"{days:g} day(s)" if days >= 1 else f"{td.total_seconds() / 3600:g} hour(s)"


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# --------------------------------------------------------------------------------------------- serve
def datasette_metadata(db_name: str, *, password: bool, user: str = REVIEW_USER) -> dict[str, Any]:
    """The Datasette metadata for the log: storage/datasette/metadata.yml with the database key renamed to
    ``db_name`` and, when ``password``, an ``allow`` block for ``user`` plus the datasette-auth-passwords
    configuration reading the hash from the FAQBOT_REVIEW_PASSWORD_HASH environment variable. Writable canned
    queries (labelling) are allowed to ``user`` only behind the password and removed otherwise."""
    import yaml

    meta = yaml.safe_load(METADATA_FILE.read_text(encoding="utf-8"))
    dbs = meta.get("databases") or {}
    if "faqbot" in dbs and db_name != "faqbot":
        dbs[db_name] = dbs.pop("faqbot")
    for name, query in list(((dbs.get(db_name) or {}).get("queries") or {}).items()):
        if query.get("write"):  # labelling: only for the logged-in curator, and only behind the password
            if password:
                query["allow"] = {"id": user}
            else:
                del dbs[db_name]["queries"][name]
    if password:
        meta["allow"] = {"id": user}  # anonymous visitors get 403 everywhere; /-/login still works
        meta.setdefault("plugins", {})["datasette-auth-passwords"] = {
            f"{user}_password_hash": {"$env": PASSWORD_HASH_ENV},
        }
    return meta


def cmd_serve(args) -> int:
    import importlib.util
    import os
    import signal
    import subprocess
    import tempfile

    settings = _settings()
    path = _db_path(args, settings)
    password = settings.review_password.get_secret_value() if settings.review_password else ""
    loopback = is_loopback(args.host)
    need_password = args.require_password or not loopback
    if need_password and not password:
        why = "--require-password was given" if loopback else f"--host {args.host} is not a loopback address"
        _err(
            f"refusing to start: {why}, so the review site needs a password, and none is set.\n"
            "Set FAQBOT_REVIEW_PASSWORD (environment or .env), or bind to 127.0.0.1 (the default)."
        )
        return 2

    if need_password and len(password) < datasette_process.MIN_PASSWORD_CHARS:
        _err(f"refusing to start: FAQBOT_REVIEW_PASSWORD has {len(password)} characters; the review site needs at "
             f"least {datasette_process.MIN_PASSWORD_CHARS} (failed logins are throttled, but a short password is "
             "guessed offline from a leaked hash in minutes)")
        return 2
    if not path.exists():
        raise _Exit(1, f"no conversation log at {path} (set FAQBOT_DB or pass --db)")
    missing = [m for m in ("datasette",) + (("datasette_auth_passwords",) if need_password else ())
               if importlib.util.find_spec(m) is None]
    if missing:
        raise _Exit(1, f"{', '.join(missing)} not installed: pip install 'faqbot[review]' (or '.[review]')")

    db_name = path.name.rsplit(".", 1)[0] if "." in path.name else path.name
    meta = datasette_metadata(db_name, password=need_password, user=args.user)
    # Host-header check (DNS rebinding) wherever the site is on a loopback address; login throttle; SQL limits.
    meta.setdefault("plugins", {})[datasette_process.GUARD_PLUGIN] = datasette_process.guard_config(
        port=args.port, check_host=loopback)
    extra_env = {}
    if need_password:
        from datasette_auth_passwords.utils import hash_password

        extra_env[PASSWORD_HASH_ENV] = hash_password(password)  # the child gets only the hash
        if not password.isascii():
            _err("note: the password is not ASCII: the login form works, HTTP Basic (curl -u) does not")
    url = f"http://{args.host if ':' not in args.host else '[' + args.host + ']'}:{args.port}/{db_name}"
    queries = list((meta.get("databases", {}).get(db_name) or {}).get("queries") or {})
    # Behind the password the curator may label turns (the writable canned query); otherwise nothing writes.
    info = {"url": url, "database": str(path), "read_only": not need_password, "password_required": need_password,
            "user": args.user if need_password else None, "queries": queries}
    with tempfile.TemporaryDirectory(prefix="faqbot-datasette-") as tmp:
        meta_path = Path(tmp) / "metadata.json"
        meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        cmd = datasette_process.datasette_args(path, args.host, args.port, meta_path) + [
            # Facet suggestions run a query per column of every table page: seconds on a large log.
            "--setting", "suggest_facets", "off"]
        # Only PATH, locale and the like: no FAQBOT_SECRET, tokens or API keys in the server's environment.
        proc, lifeline = datasette_process.start(cmd, datasette_process.child_env(extra_env))
        info["server_pid"] = proc.pid
        if args.json:
            sys.stdout.write(json.dumps(info, ensure_ascii=False) + "\n")  # one line: easy to read from a pipe
        else:
            print(f"Serving {path} {'' if need_password else 'read-only '}at {url}"
                  + (f" (log in at /-/login as '{args.user}'; labelling: the 'Label a turn' query)"
                     if need_password else "")
                  + f"\ncanned queries: {', '.join(queries)}\nCtrl-C to stop.")
        sys.stdout.flush()

        def forward(signum, frame):  # stop the server with us; never leave it running alone
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

        old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                forward(signal.SIGINT, None)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                return 130
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for s, h in old.items():
                signal.signal(s, h)
            os.close(lifeline)


# --------------------------------------------------------------------------------------------- parser
def add_logs_parser(subparsers) -> argparse.ArgumentParser:
    """Add `logs` and its verbs to the `faqbot` argparse subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="log database (default: FAQBOT_DB, ./data/faqbot.db)")
    common.add_argument("--json", action="store_true", help="JSON output for scripts")

    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--route", choices=[r.value for r in Route], help="only turns routed faq / clarify / llm / none")
    filters.add_argument("--since", type=parse_since, metavar="WHEN",
                         help="only turns since WHEN: 7d, 24h, 30m or an ISO date/time (UTC unless it has an offset)")
    filters.add_argument("--channel", help="only this channel (telegram, matrix, console, cli)")
    filters.add_argument("--feedback", choices=FEEDBACK,
                         help="latest feedback: up (👍), down (👎), none (none of these / 都不是); any = some feedback")

    logs = subparsers.add_parser(
        "logs", help="review the conversation log (list, show, search, stats, gaps, replay, export, purge, compact, serve)",
        description="Review the conversation log. Every verb takes --db and --json.",
    )
    verbs = logs.add_subparsers(dest="logs_command", required=True, metavar="VERB")

    p = verbs.add_parser("list", parents=[common, filters], help="recent turns, newest first")
    p.add_argument("-n", "--limit", type=parse_count, default=20, help="how many (default 20; 0 = all)")
    p.set_defaults(func=_run(cmd_list))

    p = verbs.add_parser("show", parents=[common], help="the whole decision trace of one turn")
    p.add_argument("id", help="turn id or a unique prefix")
    p.set_defaults(func=_run(cmd_show))

    p = verbs.add_parser("search", parents=[common], help="turns whose question or answer contains TEXT")
    p.add_argument("text", help="any substring, Chinese included (3+ characters use the full-text index)")
    p.add_argument("-n", "--limit", type=parse_count, default=50, help="how many (default 50; 0 = all)")
    p.set_defaults(func=_run(cmd_search))

    p = verbs.add_parser("stats", parents=[common], help="turns by route and channel, feedback, latency, top entries")
    p.add_argument("--since", type=parse_since, metavar="WHEN", help="only turns since WHEN (7d, 24h, ISO date)")
    p.add_argument("--top", type=parse_count, default=10, help="how many most-asked entries (default 10)")
    p.set_defaults(func=_run(cmd_stats))

    p = verbs.add_parser("gaps", parents=[common],
                         help="the gap inbox: unanswered / disliked questions grouped by similarity, with snippets")
    p.add_argument("--since", type=parse_since, metavar="WHEN", default=None,
                   help="only turns since WHEN (7d, 24h, ISO date; default 30d: a year of traffic would be slow)")
    p.add_argument("--all", action="store_true", help="the whole log instead of the last 30 days")
    p.add_argument("-n", "--limit", type=parse_count, default=20, help="how many clusters (default 20; 0 = all)")
    p.add_argument("--knowledge", metavar="DIR", help="knowledge directory for the nearest entry (default: current)")
    p.add_argument("--similarity", type=float, default=0.35, help="cluster join threshold 0-1 (default 0.35)")
    p.add_argument("--alternate-threshold", type=float, default=None,
                   help="nearest-entry score from which an alternate is suggested (default: the clarify threshold)")
    p.add_argument("--no-snippets", action="store_true", help="leave out the TOML snippets")
    p.set_defaults(func=_run(cmd_gaps))

    p = verbs.add_parser("replay", parents=[common, filters],
                         help="re-run logged questions against the current (or an edited) knowledge base")
    p.add_argument("-n", "--limit", type=parse_count, default=0, help="replay the N most recent selected turns (0 = all)")
    p.add_argument("--knowledge", metavar="DIR", help="knowledge directory to try (default: the configured one)")
    p.set_defaults(func=_run(cmd_replay))

    p = verbs.add_parser("export", parents=[common, filters], help="all turns with feedback counts, as CSV or JSONL")
    p.add_argument("--format", choices=("csv", "jsonl", "eval"), default="csv",
                   help="csv (default), jsonl, or eval (with --reviewed: q/sections/kind for `faqbot eval`)")
    p.add_argument("--reviewed", action="store_true",
                   help="the reviewed turns as a regression set (needs --format eval); --since = reviewed since")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")
    p.add_argument("-n", "--limit", type=parse_count, default=0, help="only the N most recent turns (0 = all)")
    p.set_defaults(func=_run(cmd_export))

    p = verbs.add_parser("purge", parents=[common], help="delete turns older than the retention period")
    p.add_argument("--older-than", type=parse_duration, metavar="AGE",
                   help="e.g. 90d, 12w, 24h; a bare number is days (default: FAQBOT_RETENTION_DAYS, 90)")
    p.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    p.add_argument("--vacuum", action="store_true",
                   help="then VACUUM to shrink the file (locks the log while it runs: stop the bot or pick a quiet "
                        "moment); also switches an older log to incremental auto-vacuum")
    p.set_defaults(func=_run(cmd_purge))

    p = verbs.add_parser("compact", parents=[common],
                         help="convert turns logged before the compact trace format, in place (resumable)")
    p.add_argument("--batch", type=int, default=2000, help="rows per transaction (default 2000)")
    p.set_defaults(func=_run(cmd_compact))

    p = verbs.add_parser("serve", parents=[common], help="browse the log read-only in Datasette")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1); any non-loopback address requires a password")
    p.add_argument("--port", type=parse_port, default=8001, help="port (default 8001)")
    p.add_argument("--require-password", action="store_true",
                   help="require the password (FAQBOT_REVIEW_PASSWORD) even on a loopback address")
    p.add_argument("--user", default=REVIEW_USER, help=f"login name when a password is required (default {REVIEW_USER})")
    p.set_defaults(func=_run(cmd_serve))

    from bot.cli.review import add_review_verbs  # label, review (curators' verdicts)

    add_review_verbs(verbs, common, filters)
    return logs
