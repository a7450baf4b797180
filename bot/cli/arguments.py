"""Argument types and choices for the `faqbot` parser: durations, times, counts, ports.

Each type raises ``argparse.ArgumentTypeError``, which argparse turns into a one-line usage error (exit 2). Light
imports only: the parser is built on every run, also for a one-shot `faqbot ask`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re

from bot.answering.types import Route

ROUTES = tuple(r.value for r in Route)
REVIEW_USER = "curator"  # the default login name on the review site (`logs serve --user`)
MAX_DAYS = 36_525  # 100 years: any longer duration or age is a typo (and would overflow the date arithmetic)
MAX_COUNT = 1_000_000_000

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


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
        return _dt.datetime.now(_dt.UTC) - parse_duration(text)
    try:
        when = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use e.g. 7d, 24h, 2025-03-01 or 2025-03-01T08:00:00+08:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    try:
        return when.astimezone(_dt.UTC)
    except OverflowError:
        raise argparse.ArgumentTypeError(f"not a usable time: {text!r}") from None
