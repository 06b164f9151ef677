"""Mandarin text helpers for corpus templates: numbers written in characters, and spotting Chinese text."""

from __future__ import annotations

import re

_DIGITS = "零一二三四五六七八九"
_UNITS = ((1000, "千"), (100, "百"), (10, "十"))
_HAN = re.compile(r"[\u3400-\u9fff]")


def chinese_number(value: int) -> str:
    """0..99999999 in characters as spoken: 2024 -> 二千零二十四, 15 -> 十五, 10010 -> 一万零一十."""
    if not 0 <= value < 100_000_000:
        raise ValueError(f"chinese_number takes 0..99999999, got {value}")
    spelled = _spell(value)
    return spelled[1:] if spelled.startswith("一十") else spelled


def _spell(value: int) -> str:
    if value >= 10_000:
        high, low = divmod(value, 10_000)
        tail = "" if low == 0 else ("零" if low < 1000 else "") + _spell(low)
        return _spell(high) + "万" + tail
    if value == 0:
        return _DIGITS[0]
    out, pending_zero = "", False
    for unit, name in _UNITS:
        digit, value = divmod(value, unit)
        if digit:
            out += ("零" if pending_zero else "") + _DIGITS[digit] + name
            pending_zero = False
        elif out:
            pending_zero = True
    if value:
        out += ("零" if pending_zero else "") + _DIGITS[value]
    return out


def chinese_digits(digits: str) -> str:
    """Read a digit string one digit at a time, as for phone numbers and years: 2024 -> 二零二四."""
    return "".join(_DIGITS[int(d)] for d in digits)


def is_chinese(text: str, min_share: float = 0.5) -> bool:
    """True when at least `min_share` of the non-space, non-punctuation characters are Han characters."""
    letters = [ch for ch in text if ch.isalnum()]
    return bool(letters) and sum(bool(_HAN.match(ch)) for ch in letters) / len(letters) >= min_share
