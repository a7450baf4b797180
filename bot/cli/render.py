"""How `faqbot logs` shows what storage returns: rich tables for people, JSON for scripts.

Storage returns rows and dicts (``storage.queries``, ``storage.gaps``, ``storage.replay``); the verbs in
``bot.cli.logs`` hand them to the functions here. Logged text is attacker-chosen: every cell goes through
``text()`` (terminal escapes stripped, never parsed as rich markup) or ``clip()``.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from collections import Counter
from typing import Any

from rich import box
from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.markup import escape as _escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as _RichProgress
from rich.table import Table
from rich.text import Text

from storage.safe_text import for_terminal, json_for_terminal

FEEDBACK_MARK = {"up": "👍", "down": "👎", "none": "∅", None: ""}  # ∅ = "none of these" (都不是)


# --------------------------------------------------------------------------------------------- building blocks
def console() -> Console:
    return Console(highlight=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(json_for_terminal(json.dumps(obj, ensure_ascii=False, indent=2, default=str)) + "\n")


def print_json_line(obj: Any) -> None:
    """One compact JSON line (`eval`, `knowledge check`: read by scripts line by line)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def print_json_rows(rows) -> int:
    """A JSON array written row by row as the rows come (bounded memory on any log size); returns the count."""
    out = sys.stdout
    n = 0
    out.write("[")
    for row in rows:
        out.write(("\n  " if n == 0 else ",\n  ") + json_for_terminal(json.dumps(row, ensure_ascii=False, default=str)))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def to_stderr(msg: str) -> None:
    """A note on stderr (not an error: those are raised and printed by bot.cli.main.main)."""
    sys.stderr.write(msg.rstrip("\n") + "\n")


def text(value: Any) -> Text:
    """A table cell or line from logged data: a rich ``Text`` (never parsed as markup, so "[link=…]" in a question
    stays text) without terminal escapes or control characters."""
    return Text(for_terminal(value))


def short_ts(ts: str | None) -> str:
    return (ts or "")[:19].replace("T", " ")


def clip(value: str | None, n: int) -> str:
    t = " ".join(for_terminal(value).split())
    return t if len(t) <= n else t[: n - 1] + "…"


def cells(value: str, width: int) -> str:
    """``value`` cut and padded to ``width`` terminal cells (CJK characters take two)."""
    return set_cell_size(value, width) if cell_len(value) != width else value


def fmt_days(td: _dt.timedelta) -> str:
    days = td.total_seconds() / 86400
    return f"{days:g} day(s)" if days >= 1 else f"{td.total_seconds() / 3600:g} hour(s)"


def fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class Progress:
    """A rich progress bar on stderr, shown only when stderr is a terminal (never in pipes, files or --json use)."""

    def __init__(self, description: str, total: int | None):
        self._bar = None
        if sys.stderr.isatty():
            self._bar = _RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------------------------- turns (list, search)
def turns_table(rows: list[dict[str, Any]], title, *, header: bool = True, fixed: bool = False) -> Table:
    # Sized to fit 80 columns: wider content would be cropped, not wrapped. `fixed`: every column but the question
    # has a fixed width, so tables printed one chunk at a time line up.
    def w(n: int) -> dict[str, int]:
        return {"width": n} if fixed else {}

    t = Table(
        title=title or None,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
        show_header=header,
    )
    t.add_column("id", no_wrap=True, **w(20))
    t.add_column("time UTC", no_wrap=True, **w(11))
    t.add_column("channel", no_wrap=True, max_width=8, overflow="ellipsis", **w(8))
    t.add_column("route", no_wrap=True, **w(7))
    t.add_column("score", justify="right", no_wrap=True, **w(5))
    t.add_column("fb", no_wrap=True, **w(2))
    t.add_column("question → entry", ratio=1, overflow="fold")
    for r in rows:
        q = Text(clip(r.get("question"), 80) or ("(error)" if r.get("error") else ""))
        if r.get("faq_id"):
            q.append(f" → {clip(r['faq_id'], 40)}", style="dim")
        t.add_row(
            text(r["turn_id"]),
            text(short_ts(r["ts"])[5:16]),
            text(r["channel"]),
            text(r["route"]),
            "" if r.get("score") is None else f"{r['score']:.0f}",
            FEEDBACK_MARK.get(r.get("feedback"), r.get("feedback") or ""),
            q,
        )
    return t


def print_turns(rows: list[dict], title, *, as_json: bool) -> None:
    """A list of turns as JSON or as a table; shared by `list` and `search`."""
    if as_json:
        print_json(rows)
    else:
        console().print(turns_table(rows, title))


def print_turn_stream(rows, title: str) -> int:
    """Every turn as one fixed-width line, printed as it comes (a rich table would hold and measure all rows)."""
    out = sys.stdout
    out.write(f"{title}\n{'id':<20}  {'time UTC':<11}  {'channel':<8}  {'route':<7}  score  fb  question → entry\n")
    n = 0
    for r in rows:
        q = clip(r.get("question"), 80) or ("(error)" if r.get("error") else "")
        if r.get("faq_id"):
            q += f" → {clip(r['faq_id'], 40)}"
        score = "" if r.get("score") is None else f"{r['score']:.0f}"
        mark = clip(FEEDBACK_MARK.get(r.get("feedback"), r.get("feedback") or ""), 2)
        out.write(
            f"{clip(r['turn_id'], 32):<20}  {clip(short_ts(r['ts'])[5:16], 11):<11}  "
            f"{cells(clip(r['channel'], 8), 8)}  {clip(r['route'], 7):<7}  {score:>5}  {cells(mark, 2)}  {q}\n"
        )
        n += 1
    out.write(f"{n} turn(s)\n")
    return n


# --------------------------------------------------------------------------------------------- one turn (show)
def print_turn(turn: dict[str, Any]) -> None:
    """The whole decision trace of one turn, its candidates and its reviews."""
    con = console()
    conv = turn.get("conversation") or {}
    t = Table(title=text(f"turn {turn['turn_id']}"), title_justify="left", show_header=False, show_lines=True)
    t.add_column("field", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")
    masked = ", ".join(f"{k} {turn.get('masked_' + k)}" for k in ("id", "phone", "bank") if turn.get("masked_" + k))
    fields = [
        ("time (UTC)", turn["ts"]),
        (
            "channel",
            f"{turn['channel']} · via {turn.get('via') or '-'} · chat {conv.get('chat_type') or '-'}"
            f" · user {(conv.get('user_hash') or '-')[:12]}",
        ),
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
        (
            "feedback",
            ", ".join(
                f"{FEEDBACK_MARK.get(f['kind'], f['kind'])} {short_ts(f['ts'])}"
                for f in turn.get("feedback_events") or []
            )
            or "-",
        ),
    ]
    for name, value in fields:
        t.add_row(name, text(value))
    con.print(t)
    if turn.get("candidates"):
        c = Table(title="candidates", title_justify="left")
        # Compact rows (storage.trace) keep no entry question: the column is shown only for older rows.
        cols = ("entry", "section", "score") + (
            ("question",) if any(x.get("question") for x in turn["candidates"]) else ()
        )
        for col in cols:
            c.add_column(col, justify="right" if col == "score" else "left")
        for cand in turn["candidates"]:
            c.add_row(
                text(cand.get("faq_id")),
                text(cand.get("section")),
                f"{float(cand.get('score') or 0):.1f}",
                *([text(cand.get("question"))] if len(cols) == 4 else []),
            )
        con.print(c)
    if turn.get("reviews"):
        rv = Table(title="reviews", title_justify="left")
        for col in ("status", "label", "note", "reviewer", "time"):
            rv.add_column(col)
        for r in turn["reviews"]:
            label = (r["label"] or "") + (f" {r['faq_id']}" if r.get("faq_id") else "")
            rv.add_row(text(r["status"]), text(label), text(r["note"]), text(r["reviewer"]), text(short_ts(r["ts"])))
        con.print(rv)


# --------------------------------------------------------------------------------------------- stats
def print_stats(s: dict[str, Any], since: _dt.datetime | None) -> None:
    con = console()

    def ms(v):
        return "-" if v is None else f"{v:.0f} ms"

    t = Table(
        title="conversation log" + (f" since {short_ts(since.isoformat())} UTC" if since else ""),
        title_justify="left",
        show_header=False,
    )
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
            tt.add_row(text(k), str(v))
        con.print(tt)
    if s["top_entries"]:
        te = Table(title="most asked entries (answered directly)", title_justify="left")
        te.add_column("entry")
        te.add_column("turns", justify="right")
        for e in s["top_entries"]:
            te.add_row(text(e["faq_id"]), str(e["count"]))
        con.print(te)


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


# --------------------------------------------------------------------------------------------- gaps
def print_gaps(clusters: list[dict[str, Any]], *, snippets: bool) -> None:
    con = console()
    if not clusters:
        con.print("The gap inbox is empty: no clarify/none turns, guard failures, thumbs-down or none-of-these.")
        return

    def escape(value):
        return _escape(for_terminal(value))

    for i, c in enumerate(clusters, 1):
        n = c["nearest"]
        near = (
            f"nearest: {n['faq_id']} (section {n['section']}, score {n['score']:.0f}) {n['question']}"
            if n
            else "nearest: -"
        )
        con.print(f"[bold]{c['count']}×[/bold] {escape(c['representative'])} — {escape(near)}")
        routes = ", ".join(f"{k} {v}" for k, v in c["routes"].items())
        reasons = ", ".join(f"{k} {v}" for k, v in c["reasons"].items())
        con.print(f"   routes: {escape(routes)} · why: {escape(reasons)} · last {escape(short_ts(c['last_seen']))} UTC")
        others = [q for q in c["examples"] if q != c["representative"]]
        if others:
            con.print("   also asked: " + escape(" · ".join(others)))
        if snippets:
            con.print(text(f"   suggestion: {c['suggestion']}"), style="dim")
            for line in c["snippet"].splitlines():
                con.print(text("   " + line))
        if i < len(clusters):
            con.print()


# --------------------------------------------------------------------------------------------- replay
def print_replay(result: dict[str, Any]) -> None:
    con = console()
    cnt = result["counts"]
    con.print(
        f"Replayed {result['replayed']} of {result['selected']} turn(s) against knowledge {result['knowledge_version']}"
        f" ({result['knowledge_dir']}); skipped {result['skipped']} (buttons, choices, no question)."
    )
    con.print(
        f"improved {cnt['improved']} · regressed {cnt['regressed']} · changed {cnt['changed']} · "
        f"unchanged {cnt['unchanged']}"
    )
    if not result["changes"]:
        return
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
        t.add_row(f"[{style[kind]}]{kind}[/]", str(n), text(clip(q, 50)), text(old), text(new))
    con.print(t)
