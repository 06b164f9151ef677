"""Text sources for the synthetic corpus, and the fixed held-out test sentences.

Sources (each optional; a missing one is reported, not fatal):
  chatterbot  chatterbot-corpus dialogues (PyPI): english -> en, chinese -> zh, traditionalchinese -> yue
  fortunes    Debian `fortunes` (en) and `fortunes-zh` (zh and yue: sayings, Tang and Song poems)
  words       Debian `wamerican` word list, as short comma-separated lists of words (en)
  generated   templates over numbers, dates, names (templates.py; en, zh, yue)
plus any user text files, one sentence per line.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from stepaudio.errors import DataError
from stepaudio.train.data.chinese import is_chinese
from stepaudio.train.data.templates import POOL_SEED, generated_sentences

LANGUAGES = ("en", "zh", "yue")
SOURCES = ("chatterbot", "fortunes", "words", "generated")
HELD_OUT_PER_LANGUAGE = 30

FORTUNES_DIR = Path("/usr/share/games/fortunes")
CHINESE_FORTUNES = ("chinese", "tang300", "song100")  # from fortunes-zh
SKIPPED_FORTUNES = ("art", "ascii-art", "translate-me")  # pictures, and a file that is not English
WORDS_FILE = Path("/usr/share/dict/words")

MAX_ENGLISH_CHARS = 200
MAX_CHINESE_CHARS = 40
_ENGLISH_OK = re.compile(r"^[A-Za-z0-9 ,.'!?;:\-\"()$%&]+$")
_ATTRIBUTION = ("--", "——", "《", "【")  # author lines and titles of fortunes and poems
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A sentence: text up to its end marks and any closing quotes after them.
_CHINESE_SENTENCE = re.compile(r"[^。！？!?；]+(?:[。！？!?；]+[”’」』）)]*)?")
_LEADING_MARKS = "”’」』）)，,、：:。；;！!？? "


@dataclass(frozen=True)
class Sentence:
    text: str
    language: str
    source: str


def clean_english(text: str) -> str | None:
    """One line of plain speakable English, or None (ASCII art, code, very long texts)."""
    text = " ".join(text.split())
    if not 2 <= len(text.split()) or len(text) > MAX_ENGLISH_CHARS or not _ENGLISH_OK.match(text):
        return None
    return text


def chinese_sentences(text: str) -> list[str]:
    """Split Chinese prose or poems into sentences, merging short ones up to MAX_CHINESE_CHARS."""
    pieces = [piece.lstrip(_LEADING_MARKS) for piece in _CHINESE_SENTENCE.findall("".join(text.split()))]
    pieces = [piece for piece in pieces if piece]
    merged: list[str] = []
    for piece in pieces:
        if merged and len(merged[-1]) + len(piece) <= MAX_CHINESE_CHARS // 2:
            merged[-1] += piece
        else:
            merged.append(piece)
    return [s for s in merged if 2 <= len(s) <= MAX_CHINESE_CHARS and is_chinese(s, 0.8)]


def _chatterbot(language: str) -> list[str]:
    import chatterbot_corpus
    import yaml

    folder = {"en": "english", "zh": "chinese", "yue": "traditionalchinese"}[language]
    statements: list[str] = []
    for path in sorted((Path(chatterbot_corpus.__file__).parent / "data" / folder).glob("*.yml")):
        for conversation in yaml.safe_load(path.read_text(encoding="utf-8")).get("conversations") or []:
            statements += [line for line in conversation if isinstance(line, str)]
    if language == "en":
        return [text for text in map(clean_english, statements) if text]
    return [sentence for text in statements for sentence in chinese_sentences(text)]


def _fortune_entries(path: Path) -> list[str]:
    """The entries of one fortune file (separated by "%" lines), without colour codes or attributions."""
    entries = _ANSI.sub("", path.read_text(encoding="utf-8", errors="replace")).split("\n%\n")
    kept = []
    for entry in entries:
        lines = [line.strip() for line in entry.splitlines()]
        lines = [line for line in lines if line and not line.startswith(_ATTRIBUTION) and "作者：" not in line]
        kept.append("\n".join(lines))
    return kept


def _fortunes(language: str) -> list[str]:
    if language == "en":
        files = [
            path
            for path in sorted(FORTUNES_DIR.iterdir())
            if not path.suffix and path.is_file() and path.name not in SKIPPED_FORTUNES + CHINESE_FORTUNES
        ]
        return [text for path in files for text in map(clean_english, _fortune_entries(path)) if text]
    files = [FORTUNES_DIR / name for name in CHINESE_FORTUNES if (FORTUNES_DIR / name).is_file()]
    return [sentence for path in files for entry in _fortune_entries(path) for sentence in chinese_sentences(entry)]


def _words(count: int = 4000) -> list[str]:
    """Lists of 3-6 dictionary words ("apple, river, sudden."), drawn with a fixed seed."""
    words = sorted({w for w in WORDS_FILE.read_text(encoding="utf-8").split() if w.isascii() and w.isalpha()})
    rng = random.Random(f"{POOL_SEED}-words")
    return [", ".join(rng.sample(words, rng.randint(3, 6))) + "." for _ in range(count)]


def _available(source: str, language: str) -> str | None:
    """None when the source can give sentences in this language, else why not (with the fix)."""
    if source == "chatterbot":
        try:
            import chatterbot_corpus  # noqa: F401
            import yaml  # noqa: F401
        except ImportError:
            return "pip install chatterbot-corpus pyyaml (the `train` extra)"
    elif source == "fortunes":
        if language == "en" and not (FORTUNES_DIR / "fortunes").is_file():
            return "apt-get install fortunes"
        if language != "en" and not (FORTUNES_DIR / "chinese").is_file():
            return "apt-get install fortunes-zh"
    elif source == "words":
        if language != "en":
            return "English only"
        if not WORDS_FILE.is_file():
            return "apt-get install wamerican"
    return None


def load_sentences(
    sources: tuple[str, ...] = SOURCES,
    languages: tuple[str, ...] = LANGUAGES,
    text_files: dict[str, list[Path]] | None = None,
) -> tuple[dict[str, list[Sentence]], list[str]]:
    """Every distinct sentence per language from the chosen sources; also notes on sources skipped."""
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise DataError(f"unknown text sources {sorted(unknown)}; choose from {', '.join(SOURCES)}")
    loaders = {
        "chatterbot": _chatterbot,
        "fortunes": _fortunes,
        "words": lambda language: _words(),
        "generated": generated_sentences,
    }
    pool: dict[str, dict[str, Sentence]] = {language: {} for language in languages}
    notes = []
    for language in languages:
        for source in sources:
            missing = _available(source, language)
            if missing:
                if missing != "English only":
                    notes.append(f"text source {source} ({language}) skipped: {missing}")
                continue
            for text in loaders[source](language):
                pool[language].setdefault(text, Sentence(text, language, source))
        for path in (text_files or {}).get(language, []):
            for text in read_text_file(path):
                pool[language].setdefault(text, Sentence(text, language, path.name))
    return {language: list(sentences.values()) for language, sentences in pool.items()}, notes


def read_text_file(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"no such text file: {path}")
    return [" ".join(line.split()) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def text_hash(text: str) -> str:
    return hashlib.sha1(" ".join(text.split()).encode("utf-8")).hexdigest()


def held_out(sentences: list[Sentence], count: int = HELD_OUT_PER_LANGUAGE) -> set[str]:
    """The test sentences: the `count` texts with the smallest hash.

    Chosen by text hash, not position, so they do not move when the corpus grows (more hours, a
    different seed, other voices); only adding text sources can swap some of them.
    """
    return set(sorted({s.text for s in sentences}, key=text_hash)[:count])
