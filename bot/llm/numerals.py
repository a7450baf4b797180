"""Chinese numerals as numbers: the guard checks numbers, the claim checks numbers with their units."""

from __future__ import annotations

_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}


def chinese_numeral_value(s: str) -> int | None:
    """Value of a Chinese numeral up to the ten-thousands ("二十四" -> 24, "两" -> 2, "十" -> 10, "2万"-style not)."""
    if not s:
        return None
    if all(ch in _CN_DIGITS for ch in s) and len(s) > 1:  # digit by digit: "二〇一八" -> 2018
        return int("".join(str(_CN_DIGITS[ch]) for ch in s))
    total, section, number = 0, 0, None
    for ch in s:
        if ch in _CN_DIGITS:
            number = _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            section += (number if number is not None else 1) * _CN_UNITS[ch]
            number = None
        elif ch == "万":
            total += (section + (number or 0)) * 10000
            section, number = 0, None
        else:
            return None
    return total + section + (number or 0)
