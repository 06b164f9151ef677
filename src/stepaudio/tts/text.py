"""Text front-end of the TTS: language guess, normalisation and sentence splitting.

The LM reads characters, not a pronunciation dictionary, so everything it cannot read aloud from
the letters is spelled out here: numbers (cardinals, years, times, decimals, percentages, money,
ordinals) in English words or Mandarin characters, and punctuation folded to a small set (full-width
marks for Chinese, ASCII for English). The same function prepares the training text, so the model
only ever sees normalised text. Parentheses are dropped from the body, because a leading "(...)"
is an instruction tag in the official prompt: real tags are taken out of the text before it comes
here (`stepaudio.tts.prompt.split_tags`), and anything else in parentheses is read as words.
"""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def guess_language(text: str) -> str:
    """ "zh" when the text has Chinese characters, else "en" (Cantonese is asked for by tag)."""
    return "zh" if _CJK.search(text) else "en"


# --- English ----------------------------------------------------------------------------------


def english_number(n: int) -> str:
    """Cardinal in words: 342 -> "three hundred forty two"."""
    if n < 0:
        return "minus " + english_number(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + (" " + english_number(rest) if rest else "")
    for value, name in _SCALES:
        if n >= value:
            rest = n % value
            return english_number(n // value) + " " + name + (" " + english_number(rest) if rest else "")
    raise AssertionError("unreachable")


def english_year(n: int) -> str:
    """1906 -> "nineteen oh six", 1950 -> "nineteen fifty", 2000 -> "two thousand"."""
    high, low = divmod(n, 100)
    if low == 0:
        return english_number(n) if high % 10 == 0 else english_number(high) + " hundred"
    return english_number(high) + " " + (("oh " + _ONES[low]) if low < 10 else english_number(low))


def english_ordinal(n: int) -> str:
    words = english_number(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _digits(text: str) -> str:
    return " ".join(_ONES[int(d)] for d in text)


def _english_numbers(text: str) -> str:
    def money(m):
        whole, cents = int(m.group(1).replace(",", "")), m.group(2)
        out = english_number(whole) + (" dollar" if whole == 1 else " dollars")
        if cents and int(cents):
            out += " and " + english_number(int(cents)) + (" cent" if int(cents) == 1 else " cents")
        return out

    def time(m):
        hour, minute = int(m.group(1)), int(m.group(2))
        if minute == 0:
            return english_number(hour) + " o'clock"
        return english_number(hour) + " " + ("oh " + _ONES[minute] if minute < 10 else english_number(minute))

    def decimal(m):
        return english_number(int(m.group(1))) + " point " + _digits(m.group(2))

    def cardinal(m):
        digits = m.group(0).replace(",", "")
        n = int(digits)
        if len(digits) == 4 and 1100 <= n <= 2099 and "," not in m.group(0) and not 2000 <= n <= 2009:
            return english_year(n)
        if len(digits) > 1 and digits.startswith("0"):
            return _digits(digits)  # a code or a phone number, read digit by digit
        return english_number(n)

    text = re.sub(r"\$(\d[\d,]*)(?:\.(\d\d))?", money, text)
    text = re.sub(r"\b(\d{1,2}):(\d\d)\b", time, text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: english_ordinal(int(m.group(1))), text)
    text = re.sub(r"(\d+)\s?%", lambda m: m.group(1) + " percent", text)
    text = re.sub(r"\b(\d+)\.(\d+)\b", decimal, text)
    text = re.sub(r"\d{1,3}(?:,\d{3})+(?!\d)|\d+", cardinal, text)
    return text.replace("&", " and ").replace("+", " plus ").replace("=", " equals ")


# --- Mandarin ---------------------------------------------------------------------------------

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_UNITS = ((10**8, "亿"), (10**4, "万"))


def chinese_number(n: int) -> str:
    """Cardinal in characters: 225 -> 二百二十五, 10500 -> 一万零五百, 12 -> 十二."""
    if n < 0:
        return "负" + chinese_number(-n)
    if n == 0:
        return "零"
    for value, name in _ZH_UNITS:
        if n >= value:
            high, rest = divmod(n, value)
            tail = ""
            if rest:
                tail = ("零" if rest < value // 10 else "") + chinese_number(rest)
            return chinese_number(high) + name + tail
    out, zero = "", False
    for value, name in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit:
            if zero and out:
                out += "零"
            out += _ZH_DIGITS[digit] + name
            zero = False
        elif out:
            zero = True
    return out[1:] if out.startswith("一十") else out


def _chinese_numbers(text: str) -> str:
    def decimal(m):
        return chinese_number(int(m.group(1))) + "点" + "".join(_ZH_DIGITS[int(d)] for d in m.group(2))

    def cardinal(m):
        digits = m.group(0)
        if len(digits) > 1 and digits.startswith("0") or len(digits) > 12:
            return "".join(_ZH_DIGITS[int(d)] for d in digits)
        return chinese_number(int(digits))

    text = re.sub(r"(\d+)(?:\.(\d+))?\s?%", lambda m: "百分之" + (decimal(m) if m.group(2) else cardinal_of(m)), text)
    text = re.sub(r"(\d{1,2}):(\d\d)", lambda m: chinese_number(int(m.group(1))) + "点" + _minutes(m.group(2)), text)
    text = re.sub(r"(\d+)\.(\d+)", decimal, text)
    return re.sub(r"\d+", cardinal, text)


def cardinal_of(match: re.Match) -> str:
    return chinese_number(int(match.group(1)))


def _minutes(text: str) -> str:
    minutes = int(text)
    return "整" if minutes == 0 else ("零" if minutes < 10 else "") + chinese_number(minutes) + "分"


# --- punctuation and the whole ------------------------------------------------------------------

_TO_ASCII = str.maketrans(
    {"，": ",", "。": ".", "？": "?", "！": "!", "：": ":", "；": ";", "“": '"', "”": '"', "‘": "'", "’": "'"}
)
_TO_CHINESE = str.maketrans({",": "，", "?": "？", "!": "！", ";": "；", ":": "：", "、": "，"})
_DROP = re.compile(r"[\"“”「」『』《》（）()\[\]{}<>*_#~|\\^`]")


def normalize(text: str, language: str | None = None) -> str:
    """Text as the LM reads it: numbers spelled out, punctuation folded, spaces collapsed.
    language: "en", "zh" or "yue" (Chinese characters); None guesses from the text."""
    language = language or guess_language(text)
    text = text.replace("\u3000", " ").replace("…", "...").replace("—", ", ").replace("–", "-")
    if language in ("zh", "yue"):
        text = _chinese_numbers(text)
        text = _DROP.sub("", text).translate(_TO_CHINESE)
        text = re.sub(r"(?<=[\u3400-\u9fff])\.|\.(?=[\u3400-\u9fff])", "。", text)
        text = re.sub(r"\s*([，。？！；：])\s*", r"\1", text)
    else:
        text = _english_numbers(text.translate(_TO_ASCII))
        text = _DROP.sub(" ", text)
        text = re.sub(r"\s+([,.?!;:])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


# A sentence ends after a Chinese mark, or after an ASCII one followed by a space or the end
# (so "3.5" and "U.S.A" stay whole); closing quotes stay with their sentence.
_SENTENCE_END = re.compile(r"(?:[。！？；]|[.!?;](?=[\"'”」]*(?:\s|$)))[\"'”」]*\s*")


def split_sentences(text: str, max_chars: int = 200, max_chinese_chars: int = 60) -> list[str]:
    """Sentences of a text, each short enough to synthesise in one go (about 15 s): splits after
    sentence-final marks, then (for a longer sentence) between clauses, then between words."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        sentences.append(text[start : match.end()])
        start = match.end()
    sentences.append(text[start:])
    return [
        piece
        for s in sentences
        if s.strip()
        for piece in _split_long(s.strip(), max_chinese_chars if guess_language(s) == "zh" else max_chars)
    ]


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Greedy packing of clauses (text up to a comma), then of words, then of characters."""
    if len(sentence) <= max_chars:
        return [sentence]
    for unit in (r"[^,，、:：]+[,，、:：]?\s*", r"\S+\s*"):
        parts = re.findall(unit, sentence)
        if len(parts) > 1:
            pieces = [""]
            for part in parts:
                if pieces[-1] and len(pieces[-1] + part) > max_chars:
                    pieces.append("")
                pieces[-1] += part
            return [q for piece in pieces for q in _split_long(piece.strip(), max_chars)]
    return [sentence[i : i + max_chars] for i in range(0, len(sentence), max_chars)]
