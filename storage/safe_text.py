"""Text that is safe to store, to print on a terminal and to open in a spreadsheet.

A logged question is attacker-controlled: anyone who can message the bot chooses its characters. Three things
follow, each handled here in one place:

* ``clean_text``: what is stored. Terminal escape sequences (CSI such as clear-screen or the alternate screen,
  OSC such as OSC-8 hyperlinks or window titles, DCS/APC/PM/SOS strings, their 8-bit C1 forms) are removed whole,
  payload included; every other C0/C1 control character (NUL, BEL, backspace, CR, DEL, U+0080-U+009F) is removed,
  except tab and newline (CR LF and a lone CR become a newline). Lone surrogates (what Python makes of invalid
  UTF-8 read with ``surrogateescape``) become U+FFFD, so the text can always be encoded and stored.
* ``for_terminal``: the same cleaning applied on display, so rows logged before it existed (or written by another
  tool) cannot drive the curator's terminal either.
* ``csv_cell``: OWASP's advice against CSV formula injection -- a cell starting with ``=``, ``+``, ``-``, ``@``,
  tab or CR gets a leading apostrophe, so spreadsheet programs show it as text instead of evaluating it.
* ``json_for_terminal``: JSON text with DEL and the C1 range written as ``\\u00XX`` escapes (``json.dumps``
  already escapes C0 but writes C1 raw, and some terminals act on UTF-8-encoded C1 controls).
"""

from __future__ import annotations

import re

__all__ = ["clean_text", "for_terminal", "csv_cell", "json_for_terminal", "has_controls"]

# Escape sequences, removed whole (their payload -- a link target, a window title -- must not leak either).
_ESCAPES = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]?            # CSI ... final byte (7-bit ESC [ or 8-bit CSI)
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])         # OSC, DCS, SOS, PM, APC: a string ...
      [^\x07\x1b\x9c]* (?:\x07|\x1b\\|\x9c)?          #   ... up to BEL or ST (or the end of the text)
    | \x1b [ -/]* [0-~]?                              # any other ESC sequence (ESC c = reset, ESC ( B, ...)
    """,
    re.VERBOSE,
)
# Every C0 control except tab and newline, DEL, and the C1 range.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_ANY_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_JSON_RAW_CONTROLS = re.compile(r"[\x7f-\x9f]")


def has_controls(text: str) -> bool:
    """True if ``clean_text`` would change ``text`` (a control character, an escape or a lone surrogate)."""
    return _ANY_CONTROL.search(text) is not None


def clean_text(text: str) -> str:
    """``text`` without terminal escapes and control characters (tab and newline kept), lone surrogates as
    U+FFFD. Idempotent; text without such characters is returned unchanged."""
    if not _ANY_CONTROL.search(text):
        return text
    text = _SURROGATES.sub("\ufffd", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ESCAPES.sub("", text)
    return _CONTROLS.sub("", text)


def for_terminal(value: object) -> str:
    """``str(value)`` cleaned for display; None is ''."""
    if value is None:
        return ""
    return clean_text(value if isinstance(value, str) else str(value))


def csv_cell(value: object) -> object:
    """A value for a CSV cell: text cleaned, and prefixed with ``'`` when a spreadsheet would read it as a formula.
    Numbers and None are returned as they are (a negative score is a number, not a formula)."""
    if not isinstance(value, str):
        return value
    risky = value.startswith(_CSV_TRIGGERS)
    text = clean_text(value)
    if risky or text.startswith(_CSV_TRIGGERS):  # cleaning may uncover a trigger ("\x1b[0m=1+1")
        text = "'" + text
    return text


def json_for_terminal(json_text: str) -> str:
    """JSON text with DEL and C1 controls escaped as ``\\u00XX`` (valid JSON: they can only occur in strings)."""
    return _JSON_RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)
