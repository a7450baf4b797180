"""Personal-data masking and pseudonymous ids (the key file they use lives in `storage.secret_key`).

`mask_pii` is THE function every piece of user text goes through before it is stored, logged or sent to an LLM.
It masks three kinds of mainland-China personal numbers and nothing else:

* resident ID numbers (居民身份证号): 18 characters (6-digit region, birth date YYYYMMDD with YYYY 18xx-20xx that is
  a real calendar date, 3-digit sequence, check digit 0-9/X), in one piece or in any grouping
  (``110105 19491231 002X``, ``1101.0519.4912.3100.2X``); and 15-digit legacy IDs (6 region + YYMMDD + 3), in one
  piece. The check digit is NOT required to be right: a mistyped ID is still personal data.
* bank card / account numbers: 16-19 digits that pass the Luhn check, written in one piece, in groups of 4 (the last
  may have 1-3 digits), as 6 + the rest or digit by digit; and any 12-19 digit number in any grouping right after
  卡号 / 银行卡 / 账号 (also 银行卡号, 银行账号, ...号码) and optional ``:：是为`` or spaces, whatever its checksum.
* mainland mobile numbers: ``1[3-9]x xxxx xxxx`` in one piece, in groups of 3 or more digits (3-4-4, 4-3-4, 3-8...)
  or digit by digit, with an optional ``+86`` / ``0086`` / ``86`` / ``(+86)`` prefix (masked too).

What counts as "written" (the detection copy, `_detection_copy`): each character is NFKC-normalized and every digit
made ASCII -- full-width ``１``, circled ``①``, dingbat ``❶``, mathematical ``𝟏``, keycap ``1️⃣``, other scripts'
digits; invisible characters (zero-width space/joiners, word joiner, BOM, soft hyphen, variation selectors) are
dropped, so a number they split is still one piece; and every run of visible separators -- spaces of any kind
(double, ideographic, no-break), dashes, dots, slashes, underscores, middle dots, also full-width -- is one group
boundary. Matching runs on that copy; the mask replaces the ORIGINAL characters of the span, so the text keeps the
user's own characters everywhere else.

How ambiguous digit runs are decided (documented policy):

* Stages run in this order: IDs, bank cards, phones. Once a span is masked it is blanked in the working copy, so a
  later stage can neither re-match nor extend it.
* A match starts and ends at group boundaries: never inside a number written in one piece (a 20-digit order number,
  hotlines 12333 / 95566, 400-xxx-xxxx, years, amounts, "24小时", "10年" are left alone), and a phone after a date
  ("2024.01.15 13812345678") is found as itself. Groups of several numbers may still be read as one when they fit
  a pattern (the last 16 digits of "1234 5678 9012 3456 7890" if they pass Luhn): we prefer masking too much over
  storing a real card number.
* An 18-character run whose characters 7-14 form a real date is an ID (even with a wrong check digit, and even if it
  also passes Luhn, which ~10 % of IDs do). Only exception: if its ID check digit is wrong AND it directly follows a
  bank keyword (卡号/银行卡/账号), it is counted as a bank number. Either way it is masked. When it is made of several
  groups its first two digits must also be a province code (or 9): "563456 2024.01.15 1234" is not an ID.
* An 18-digit run that is not date-shaped is masked as a bank card if it passes Luhn (or follows a bank keyword),
  otherwise it is left alone (order numbers, tracking numbers, ...).
* A 15-digit run is a legacy ID only if it is date-shaped (19YYMMDD is a real date); otherwise it is left alone unless
  it follows a bank keyword.

Known trade-offs: a serial or order number that happens to look like an ID (a province code, a real date at
characters 7-14) or like a Luhn-valid 16-19 digit card number is masked; so is a list of numbers whose groups add up
to a phone number written 3-4-4 ("150 2000 3000"). Commas are not separators (amounts such as "1,234,567" stay
apart), so "138,1234,5678" is not masked; neither are numbers spelled in Chinese numerals (一三八...).

Placeholders: ``[身份证号]``, ``[手机号]``, ``[银行卡号]``. They contain no digits, so masking is idempotent.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import operator
import re
import unicodedata
from dataclasses import dataclass, field

__all__ = [
    "Masked",
    "mask_pii",
    "mask_log_text",
    "pseudonymize",
    "pseudonymize_opt",
    "PLACEHOLDERS",
]


PLACEHOLDERS: dict[str, str] = {"id": "[身份证号]", "phone": "[手机号]", "bank": "[银行卡号]"}

# --- the detection copy ------------------------------------------------------------------------------------------
# Separators people put inside a number: whitespace, dashes (Unicode Pd), dots, slashes, underscores, middle dots.
_SEPARATORS = frozenset(" \t\r\n\f\v.-/\\_·・‧")
# Digit-like characters, for the cheap pre-check: decimal digits of any script (\d: ASCII, full-width, Arabic-Indic,
# mathematical...), super/subscripts, circled/parenthesized/full-stop digits (①⑴⒈⓪⓵), dingbat digits (❶➀➊).
_DIGITISH = re.compile(
    "[\\d\u00b2\u00b3\u00b9\u2070\u2074-\u2079\u2080-\u2089\u2460-\u249b\u24ea-\u24ff"
    "\u2776-\u2793\u3251-\u325f\u32b1-\u32bf\U0001f100-\U0001f10a]"
)
_SEP = " "  # a run of separators in the detection copy


def _detection_copy(text: str) -> tuple[str, list[int]]:
    """The text as matching sees it, and for each of its characters the index of the original character.

    NFKC per character with every digit made ASCII (full-width, circled ①, dingbat ❶, other scripts); invisible
    characters (zero-width space/joiners, word joiner, BOM, soft hyphen, variation selectors, keycap marks) are
    dropped, so digits split by a word joiner read as one group; every run of visible separators (see `_SEPARATORS`,
    ideographic space and full-width dots/dashes/slashes after NFKC) becomes one space. All other characters stay
    (one for one when their NFKC form is longer), so they keep numbers apart.
    """
    out: list[str] = []
    origin: list[int] = []
    last_sep = False
    for i, ch in enumerate(text):
        forms = ch if ch.isascii() else _forms(ch)
        for f in forms:
            if f in _SEPARATORS:
                if not last_sep:
                    out.append(_SEP)
                    origin.append(i)
                last_sep = True
            else:
                out.append(f)
                origin.append(i)
                last_sep = False
    return "".join(out), origin


@functools.lru_cache(maxsize=4096)
def _forms(ch: str) -> str:
    """What one non-ASCII character becomes in the detection copy ("" = dropped). Cached: Chinese text repeats."""
    cat = unicodedata.category(ch)
    if cat in ("Cf", "Mn", "Me"):  # invisible, or a mark on the digit before it
        return ""
    if ch.isspace() or cat == "Pd":
        return " "
    forms = unicodedata.normalize("NFKC", ch)
    if forms.isascii() and forms.strip("0123456789.-/() ") == "":
        return forms
    digit = unicodedata.digit(ch, None)
    return str(digit) if digit is not None else (forms if len(forms) == 1 else ch)


# Every pattern runs on the detection copy, where the only separator is one space, and is anchored to group edges:
# not preceded by a digit, not followed by one. A number the user wrote as one group is never split, and a match
# never glues a digit group to the part of another number (a 20-digit order number, "2024.01.15 13812345678").
_ID18 = re.compile(r"(?=[1-9])(?<![0-9])[1-9](?: ?[0-9]){16} ?[0-9Xx](?![0-9Xx])", re.ASCII)
_ID15 = re.compile(r"(?=[1-9])(?<![0-9])[1-9][0-9]{14}(?![0-9])", re.ASCII)
_BANK_KEYWORD = r"(?:银行卡|卡号|账号)(?:号码|号|码)?[ :是为]*"
_BANK_CONTEXT = re.compile(rf"{_BANK_KEYWORD}(?P<num>[0-9](?: ?[0-9]){{11,18}})(?![0-9])", re.ASCII)
_BANK_KEYWORD_BEFORE = re.compile(rf"{_BANK_KEYWORD}\Z", re.ASCII)
# Up to 19 digits from a group start to a group end; the acceptor picks the card inside (see _accept_luhn).
_DIGIT_RUN = re.compile(r"(?=[0-9])(?<![0-9])[0-9](?: ?[0-9]){15,18}(?![0-9])", re.ASCII)
_PHONE = re.compile(
    r"(?=[+(081])(?<![0-9+])"
    r"(?:\(?(?:\+|00)?86\)? ?)?"
    r"(?P<num>1 ?[3-9](?: ?[0-9]){9})"
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


Found = tuple[str, int, int]  # (kind, start, end) in the detection copy


# First two digits of a resident ID: the province (GB/T 2260), or 9 for foreigners' permanent residence IDs.
_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83".split()
)


def _accept_id18(work: str, m: re.Match[str]) -> Found | None:
    digits = _NOT_DIGIT.sub("", m.group())
    if not _id18_date_shaped(digits):
        return None
    if _SEP in m.group() and digits[:2] not in _PROVINCES and digits[0] != "9":
        return None  # pieces of several numbers ("123456 2024.01.15 1234"), not an ID written in groups
    if _bank_keyword_before(work, m.start()) and id_check_digit(digits[:17]) != digits[17].upper():
        return "bank", m.start(), m.end()
    return "id", m.start(), m.end()


def _accept_id15(work: str, m: re.Match[str]) -> Found | None:
    d = m.group()
    if not _real_date(1900 + int(d[6:8]), int(d[8:10]), int(d[10:12])):
        return None
    return ("bank" if _bank_keyword_before(work, m.start()) else "id"), m.start(), m.end()


def _card_grouping(sizes: list[int]) -> bool:
    """How card numbers are written: one group, groups of four (the last may have 1-3 digits), 6 + the rest, or
    digit by digit."""
    if len(sizes) == 1 or max(sizes) == 1:
        return True
    if sizes[:4] == [4, 4, 4, 4]:
        return len(sizes) == 4 or (len(sizes) == 5 and sizes[4] <= 3)
    return len(sizes) == 2 and sizes[0] == 6


def _accept_luhn(work: str, m: re.Match[str]) -> Found | None:
    # The run holds up to 19 digits from a group start to a group end; try its group-aligned prefixes that are
    # 16-19 digits long and written like a card, longest first.
    groups = m.group().split(_SEP)
    sizes = [len(g) for g in groups]
    for n in range(len(groups), 0, -1):
        total = sum(sizes[:n])
        if 16 <= total <= 19 and _card_grouping(sizes[:n]) and luhn_ok("".join(groups[:n])):
            return "bank", m.start(), m.start() + total + n - 1
    return None


def _accept_bank_context(work: str, m: re.Match[str]) -> Found | None:
    return "bank", m.start("num"), m.end("num")


def _accept_phone(work: str, m: re.Match[str]) -> Found | None:
    # 3-4-4, 4-3-4, 3-8, 7-4 ...: groups of 3 digits or more; or every digit on its own. Not 2-digit groups, which
    # is how lists of small numbers look.
    sizes = {len(g) for g in m.group("num").split(_SEP)}
    if min(sizes) >= 3 or sizes == {1}:
        return "phone", m.start(), m.end()
    return None


# (pattern, acceptor), in priority order: IDs, bank numbers, phones.
_STAGES = (
    (_ID18, _accept_id18),
    (_ID15, _accept_id15),
    (_BANK_CONTEXT, _accept_bank_context),
    (_DIGIT_RUN, _accept_luhn),
    (_PHONE, _accept_phone),
)


def mask_pii(text: str) -> Masked:
    """Mask resident IDs, bank card numbers and mobile numbers in `text` (see the module docstring for the rules)."""
    counts = {"id": 0, "phone": 0, "bank": 0}
    if not text or _DIGITISH.search(text) is None or len(_DIGITISH.findall(text)) < 11:  # patterns need 11+ digits
        return Masked(text, counts)

    work, origin = _detection_copy(text)
    spans: list[tuple[int, int, str]] = []
    for pattern, accept in _STAGES:
        # Like finditer, but a rejected candidate does not hide candidates that start inside it
        # ("1 110105194912310021" must still find the ID that starts at the third character).
        pos = 0
        while (m := pattern.search(work, pos)) is not None:
            found = accept(work, m)
            if found is None:
                pos = m.start() + 1
                continue
            kind, start, end = found
            stop = origin[end - 1] + 1
            while stop < len(text) and unicodedata.category(text[stop]) in ("Mn", "Me", "Cf"):
                stop += 1  # keycap / variation marks and invisible characters after the last digit go with it
            spans.append((origin[start], stop, kind))
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
_NAME_KEYS = (
    "first_name",
    "last_name",
    "username",
    "full_name",
    "display_name",
    "displayname",
    "sender",
    "state_key",
    "user_id",
    "phone_number",
    "email",
    "vcard",
)
_NAMED_VALUE = re.compile(
    r"""(?P<key>(?<![A-Za-z0-9_])["']?(?:""" + "|".join(_NAME_KEYS) + r""")["']?\s*[:=]\s*)"""
    r"""(?P<q>["'])(?:\\.|(?!(?P=q)).)*(?P=q)""",
    re.DOTALL,
)
NAME_PLACEHOLDER = "[姓名]"
# A Matrix user id anywhere in a log message (@localpart:server): the localpart names the person; the server stays.
_MATRIX_USER = re.compile(r"(?<![\w@])@[A-Za-z0-9._=/+-]+(?=:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?::[0-9]+)?)")


def mask_log_text(text: str) -> str:
    """Personal data out of one process-log message: names and usernames in dumped objects (also where the same
    name appears elsewhere in the message, e.g. in the text the person typed), the localpart of Matrix user ids,
    and every ID, phone and card number (`mask_pii`)."""
    if "_" in text or "name" in text or "sender" in text or "email" in text or "vcard" in text:
        names: set[str] = set()

        def blank(m: re.Match[str]) -> str:
            value = m.group()[len(m["key"]) + 1 : -1]
            if len(value) >= 2:
                names.add(value)
            return f"{m['key']}{m['q']}{NAME_PLACEHOLDER}{m['q']}"

        text = _NAMED_VALUE.sub(blank, text)
        for name in sorted(names, key=len, reverse=True):
            text = text.replace(name, NAME_PLACEHOLDER)
    if "@" in text:
        text = _MATRIX_USER.sub("@" + NAME_PLACEHOLDER, text)
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
