"""Personal-data masking, pseudonymous ids and the pseudonymization secret.

`mask_pii` is THE function every piece of user text goes through before it is stored, logged or sent to an LLM.
It masks three kinds of mainland-China personal numbers and nothing else:

* resident ID numbers (居民身份证号): 18 characters (6-digit region, birth date YYYYMMDD with YYYY 18xx-20xx that is
  a real calendar date, 3-digit sequence, check digit 0-9/X), contiguous or grouped with single spaces/dashes
  (``110105 19491231 002X``, ``1101 0519 4912 3100 2X``); and 15-digit legacy IDs (6 region + YYMMDD + 3), contiguous.
  The check digit is NOT required to be right: a mistyped ID is still personal data.
* bank card / account numbers: 16-19 digits (contiguous, or in groups of 4 separated by single spaces/dashes, the
  last group may have 1-3 digits) that pass the Luhn check; and any 12-19 digit number (contiguous or with single
  spaces/dashes) right after 卡号 / 银行卡 / 账号 (also 银行卡号, 银行账号, ...号码) and optional ``:：是为`` or spaces,
  whatever its checksum.
* mainland mobile numbers: ``1[3-9]x xxxx xxxx`` with optional single spaces/dashes between the 3-4-4 groups and an
  optional ``+86`` / ``0086`` / ``86`` prefix (the prefix is masked too).

How ambiguous digit runs are decided (documented policy):

* Detection runs on a copy in which full-width digits/X/space/dash/plus (and other dash-like characters, NBSP) are
  mapped to ASCII. The mapping is one character to one character, so positions line up and the returned text keeps
  the user's original characters everywhere except inside the masked spans.
* Stages run in this order: IDs, bank cards, phones. Once a span is masked it is blanked in the working copy, so a
  later stage can neither re-match nor extend it.
* An 18-character run whose characters 7-14 form a real date is an ID (even with a wrong check digit, and even if it
  also passes Luhn, which ~10 % of IDs do). Only exception: if its ID check digit is wrong AND it directly follows a
  bank keyword (卡号/银行卡/账号), it is counted as a bank number. Either way it is masked.
* An 18-digit run that is not date-shaped is masked as a bank card if it passes Luhn (or follows a bank keyword),
  otherwise it is left alone (order numbers, tracking numbers, ...).
* A 15-digit run is a legacy ID only if it is date-shaped (19YYMMDD is a real date); otherwise it is left alone unless
  it follows a bank keyword.
* Every match is anchored so that it is not part of a longer digit run (``(?<![0-9])`` / ``(?![0-9])``): a 20-digit
  order number, hotlines (12333, 95566), 400-xxx-xxxx numbers, years, amounts, "24小时", "10年" are left alone. A
  grouped number may still be matched inside a longer *grouped* run (e.g. the last 16 digits of "1234 5678 9012 3456
  7890" if they pass Luhn): we prefer masking too much over storing a real card number.

Placeholders: ``[身份证号]``, ``[手机号]``, ``[银行卡号]``. They contain no digits, so masking is idempotent.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import operator
import os
import re
import secrets as _secrets
from dataclasses import dataclass, field
from pathlib import Path

from storage.safety import ensure_private_folder, read_private_file

__all__ = [
    "Masked",
    "mask_pii",
    "mask_log_text",
    "pseudonymize",
    "pseudonymize_opt",
    "load_or_create_secret",
    "PLACEHOLDERS",
]

log = logging.getLogger(__name__)

PLACEHOLDERS: dict[str, str] = {"id": "[身份证号]", "phone": "[手机号]", "bank": "[银行卡号]"}

# --- normalization (detection copy only; strictly one character -> one character) -------------------------------
_FULLWIDTH = {0xFF10 + i: ord("0") + i for i in range(10)}  # ０-９
_FULLWIDTH.update(
    {
        0xFF38: "X",  # Ｘ
        0xFF58: "x",  # ｘ
        0x3000: " ",  # ideographic space
        0x00A0: " ",  # no-break space
        0xFF0B: "+",  # ＋
        0xFF0D: "-",  # －
        0x2010: "-",  # ‐ hyphen
        0x2011: "-",  # ‑ non-breaking hyphen
        0x2012: "-",  # ‒ figure dash
        0x2013: "-",  # – en dash
        0x2014: "-",  # — em dash
        0x2015: "-",  # ― horizontal bar
        0x2212: "-",  # − minus sign
    }
)

_NEEDS_MAP = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_FULLWIDTH)) + "]")

# Cheap pre-check on the ORIGINAL text: every pattern below needs at least 11 digits joined by at most one separator
# each (phone: 11, legacy ID: 15, keyword bank number: 12). Most questions have no such run and return at once.
_SEP_CHARS = " \\-\u3000\u00a0\uff0d\u2010-\u2015\u2212"
_PRECHECK = re.compile(rf"[0-9０-９](?:[{_SEP_CHARS}]?[0-9０-９]){{10}}")

# Patterns start with a lookahead on the first character: it lets the regex engine skip non-candidates quickly.
_ID18 = re.compile(
    r"(?=[1-9])(?<![0-9])"
    r"[1-9](?:[ -]?[0-9]){16}[ -]?[0-9Xx]"  # 18 characters, optional single separators anywhere
    r"(?![0-9])",
    re.ASCII,
)
_ID15 = re.compile(r"(?=[1-9])(?<![0-9])[1-9][0-9]{14}(?![0-9])", re.ASCII)
_BANK_KEYWORD = r"(?:银行卡|卡号|账号)(?:号码|号|码)?[\s:：是为]*"
_BANK_CONTEXT = re.compile(
    rf"{_BANK_KEYWORD}(?P<num>[0-9](?:[ -]?[0-9]){{11,18}})(?![ -]?[0-9])",
    re.ASCII,
)
_BANK_KEYWORD_BEFORE = re.compile(rf"{_BANK_KEYWORD}\Z", re.ASCII)
_BANK_LUHN = re.compile(
    r"(?=[0-9])(?<![0-9])"
    r"(?:[0-9]{16,19}|[0-9]{4}(?:[ -][0-9]{4}){3}(?:[ -][0-9]{1,3})?)"
    r"(?![0-9])",
    re.ASCII,
)
_PHONE = re.compile(
    r"(?=[+081])(?<![0-9+])"
    r"(?:(?:\+|00)?86[ -]?)?"
    r"1[3-9][0-9][ -]?[0-9]{4}[ -]?[0-9]{4}"
    r"(?![0-9])",
    re.ASCII,
)
_NOT_DIGIT = re.compile(r"[^0-9Xx]", re.ASCII)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_BLANK = "\x00"  # what a masked span becomes in the working copy: not a digit, separator or keyword character


@dataclass(frozen=True)
class Masked:
    text: str
    counts: dict[str, int] = field(default_factory=lambda: {"id": 0, "phone": 0, "bank": 0})

    @property
    def total(self) -> int:
        return sum(self.counts.values())


_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _real_date(year: int, month: int, day: int) -> bool:
    if not (1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month]):
        return False
    return month != 2 or day <= 28 or (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0))


def id_check_digit(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits of a resident ID."""
    return _ID_CHECK[sum(map(operator.mul, map(int, first17), _ID_WEIGHTS)) % 11]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _id18_date_shaped(digits: str) -> bool:
    year = int(digits[6:10])
    return 1800 <= year <= 2099 and _real_date(year, int(digits[10:12]), int(digits[12:14]))


def _bank_keyword_before(work: str, start: int) -> bool:
    return _BANK_KEYWORD_BEFORE.search(work, max(0, start - 12), start) is not None


def _accept_id18(work: str, m: re.Match[str]) -> str | None:
    digits = _NOT_DIGIT.sub("", m.group())
    if not _id18_date_shaped(digits):
        return None
    if _bank_keyword_before(work, m.start()) and id_check_digit(digits[:17]) != digits[17].upper():
        return "bank"
    return "id"


def _accept_id15(work: str, m: re.Match[str]) -> str | None:
    d = m.group()
    if not _real_date(1900 + int(d[6:8]), int(d[8:10]), int(d[10:12])):
        return None
    return "bank" if _bank_keyword_before(work, m.start()) else "id"


def _accept_luhn(work: str, m: re.Match[str]) -> str | None:
    return "bank" if luhn_ok(_NOT_DIGIT.sub("", m.group())) else None


# (pattern, acceptor -> kind or None, group to mask), in priority order: IDs, bank numbers, phones.
_STAGES = (
    (_ID18, _accept_id18, 0),
    (_ID15, _accept_id15, 0),
    (_BANK_CONTEXT, lambda work, m: "bank", "num"),
    (_BANK_LUHN, _accept_luhn, 0),
    (_PHONE, lambda work, m: "phone", 0),
)


def mask_pii(text: str) -> Masked:
    """Mask resident IDs, bank card numbers and mobile numbers in `text` (see the module docstring for the rules)."""
    counts = {"id": 0, "phone": 0, "bank": 0}
    if not text or _PRECHECK.search(text) is None:
        return Masked(text, counts)

    work = text.translate(_FULLWIDTH) if _NEEDS_MAP.search(text) else text  # same length as `text`
    spans: list[tuple[int, int, str]] = []
    for pattern, accept, group in _STAGES:
        # Like finditer, but a rejected candidate does not hide candidates that start inside it
        # ("1 110105194912310021" must still find the ID that starts at the third character).
        pos = 0
        while (m := pattern.search(work, pos)) is not None:
            kind = accept(work, m)
            if kind is None:
                pos = m.start() + 1
                continue
            start, end = m.span(group)
            spans.append((start, end, kind))
            counts[kind] += 1
            work = work[:start] + _BLANK * (end - start) + work[end:]
            pos = end

    if not spans:
        return Masked(text, counts)
    spans.sort()
    out: list[str] = []
    pos = 0
    for start, end, kind in spans:
        out.append(text[pos:start])
        out.append(PLACEHOLDERS[kind])
        pos = end
    out.append(text[pos:])
    return Masked("".join(out), counts)


# --- process log ------------------------------------------------------------------------------------------------
# Fields that name a person in the objects libraries dump into their log records: Telegram's User/Chat (raw JSON
# "first_name": "...", a dict repr 'first_name': '...', a pydantic repr first_name='...') and Matrix events
# (sender, displayname). Their values are replaced whole; numbers elsewhere go through mask_pii.
_NAME_KEYS = ("first_name", "last_name", "username", "full_name", "display_name", "displayname", "sender",
              "state_key", "user_id", "phone_number", "email", "vcard")
_NAMED_VALUE = re.compile(
    r"""(?P<key>(?<![A-Za-z0-9_])["']?(?:""" + "|".join(_NAME_KEYS) + r""")["']?\s*[:=]\s*)"""
    r"""(?P<q>["'])(?:\\.|(?!(?P=q)).)*(?P=q)""",
    re.DOTALL,
)
NAME_PLACEHOLDER = "[姓名]"


def mask_log_text(text: str) -> str:
    """Personal data out of one process-log message: names and usernames in dumped objects (also where the same
    name appears elsewhere in the message, e.g. in the text the person typed), and every ID, phone and card number
    (`mask_pii`)."""
    if "_" in text or "name" in text or "sender" in text or "email" in text or "vcard" in text:
        names: set[str] = set()

        def blank(m: re.Match[str]) -> str:
            value = m.group()[len(m["key"]) + 1:-1]
            if len(value) >= 2:
                names.add(value)
            return f"{m['key']}{m['q']}{NAME_PLACEHOLDER}{m['q']}"

        text = _NAMED_VALUE.sub(blank, text)
        for name in sorted(names, key=len, reverse=True):
            text = text.replace(name, NAME_PLACEHOLDER)
    return mask_pii(text).text


# --- pseudonymous ids -------------------------------------------------------------------------------------------


def pseudonymize(value: str | int, secret: bytes) -> str:
    """Stable pseudonymous id: HMAC-SHA256(secret, str(value)) as hex, first 32 characters (128 bits)."""
    return hmac.new(secret, str(value).encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def pseudonymize_opt(value: str | int | None, secret: bytes) -> str | None:
    """`pseudonymize`, but None (and "") stay None."""
    if value is None or value == "":
        return None
    return pseudonymize(value, secret)


def load_or_create_secret(configured: str | None, path: Path) -> bytes:
    """The pseudonymization secret.

    A configured (non-blank) value wins, used as UTF-8. Otherwise the content of `path` if it exists and is not
    empty. Otherwise 32 random bytes, hex-encoded (64 characters), are written to `path` with mode 0600 (the parent
    directory is created with mode 0700 if missing) and returned. Creation is race-safe: if two processes start at
    once, both end up with the same file content.
    """
    if configured is not None and configured.strip():
        return configured.strip().encode("utf-8")
    path = Path(path)
    existing = _read_secret(path)
    if existing:
        return existing

    ensure_private_folder(path.parent, "pseudonymization key")
    value = _secrets.token_hex(32).encode("ascii")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(value + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # in case a umask or ACL interfered
        try:
            os.link(tmp, path)  # atomic, fails if another process created the file first
        except FileExistsError:
            winner = _read_secret(path)
            if winner:
                return winner
            os.replace(tmp, path)  # an empty leftover file: replace it
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    log.info("created a new pseudonymization secret in %s", path)
    return value


def _read_secret(path: Path) -> bytes | None:
    # storage.safety refuses a key that is a symbolic link, a FIFO, another user's or writable by others.
    data = read_private_file(path, "pseudonymization key")
    return (data or b"").strip() or None
