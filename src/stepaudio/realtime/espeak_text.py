"""User text cut into the pieces Piper speaks one at a time, none of which can crash espeak-ng.

espeak-ng (Piper's phonemizer, run in process) reads a letter followed by a dot as an abbreviation
("U.S.A.") and spells a run of them as one, spaces and punctuation between them included, without
checking the size of what it writes: past it, memory is corrupted and the process dies. Measured with
Piper's espeak-ng (en-us), the shortest runs that kill it are 26 letters with a long spoken name
("𐌀." x 25 + "𐌀", 51 characters), 33 CJK letters, 49 accented ones, 97 ASCII ones ("x." x 97, the
server's crash; "U.S." x 49 too); one call of espeak per piece starts a new run, and so does any word
or number between. Stacking suffixes on one word ("s'" x 71, 142 characters) also kills it.
"""

from __future__ import annotations

import re

MAX_SPELLED_LETTERS = 12  # letters followed by a dot in one piece: under half the shortest deadly run (26)
MAX_WORD_CHARS = 48  # a third of the shortest deadly word measured (142); longer ones are cut
# A piece is one rendering, yielded before the next starts: 160 characters of prose is ~10 s of speech
# and ~1.5 s of one core, so the first piece comes quickly; a longer sentence is cut at its clauses.
MAX_PIECE_CHARS = 160

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_INITIALS_END = re.compile(r"(?:^|\s)(?:[^\W\d_]\.){2,}$")  # "U.S.A.", "e.g.": espeak says if a sentence ends
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")
_SPACE = re.compile(r"\s+")
# Digits end a word for espeak and its number reader bounds itself (no fault on runs of up to 4,096
# digits), so runs of digits stay whole: cut, each piece would be read as a number of sextillions.
_LONG_WORD = re.compile(rf"[^\s0-9]{{{MAX_WORD_CHARS + 1},}}")
_SPELLED_LETTER = re.compile(r"[^\W\d_]\.")


def speech_pieces(text: str) -> list[str]:
    """The text in pieces of at most MAX_PIECE_CHARS (a run of digits may be longer), in order: its
    sentences, a long one cut at clause punctuation, then between words; long words and long runs of
    spelled letters cut up."""
    pieces = []
    for sentence in _sentences(_LONG_WORD.sub(_cut_word, text.strip())):
        for piece in _fit(sentence, (_CLAUSE_END, _SPACE)):
            pieces += _cut_spelling(piece)
    return [piece for piece in pieces if piece.strip()]


def _sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for part in _SENTENCE_END.split(text):
        if sentences and _INITIALS_END.search(sentences[-1]):
            sentences[-1] += " " + part
        else:
            sentences.append(part)
    return sentences


def _cut_word(word: re.Match) -> str:
    text = word.group()
    return " ".join(text[i : i + MAX_WORD_CHARS] for i in range(0, len(text), MAX_WORD_CHARS))


def _fit(text: str, separators: tuple[re.Pattern, ...]) -> list[str]:
    """`text` as pieces of at most MAX_PIECE_CHARS, cut at the first separator that occurs, then the
    next; parts joined back while they fit."""
    if len(text) <= MAX_PIECE_CHARS or not separators:
        return [text]
    parts = separators[0].split(text)
    if len(parts) == 1:
        return _fit(text, separators[1:])
    pieces: list[str] = []
    for part in parts:
        if pieces and len(pieces[-1]) + 1 + len(part) <= MAX_PIECE_CHARS:
            pieces[-1] += " " + part
        else:
            pieces += _fit(part, separators[1:])
    return pieces


def _cut_spelling(piece: str) -> list[str]:
    """The piece cut after every MAX_SPELLED_LETTERS-th letter followed by a dot."""
    cuts = [match.end() for match in _SPELLED_LETTER.finditer(piece)][MAX_SPELLED_LETTERS - 1 :: MAX_SPELLED_LETTERS]
    bounds = [0, *cuts, len(piece)]
    return [piece[start:end].strip() for start, end in zip(bounds[:-1], bounds[1:], strict=True)]
