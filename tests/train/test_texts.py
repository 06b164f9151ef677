import random

import pytest

from stepaudio.train.data.chinese import chinese_digits, chinese_number, is_chinese
from stepaudio.train.data.templates import generated_sentences
from stepaudio.train.data.texts import (
    FORTUNES_DIR,
    Sentence,
    chinese_sentences,
    clean_english,
    held_out,
    load_sentences,
    text_hash,
)


@pytest.mark.parametrize(
    "value,spoken",
    [(0, "零"), (7, "七"), (10, "十"), (15, "十五"), (20, "二十"), (101, "一百零一"), (110, "一百一十"),
     (2024, "二千零二十四"), (10010, "一万零一十"), (150000, "十五万")],
)  # fmt: skip
def test_chinese_number(value, spoken):
    assert chinese_number(value) == spoken


def test_chinese_digits_and_detection():
    assert chinese_digits("2024") == "二零二四"
    assert is_chinese("你好 ok") and not is_chinese("hello 你")


def test_english_cleaning_drops_art_and_long_texts():
    assert clean_english("  A day   for firm\ndecisions!  ") == "A day for firm decisions!"
    assert clean_english("  /\\_/\\  ( o.o ) > ^ <") is None
    assert clean_english("word") is None
    assert clean_english("x " * 150) is None


def test_chinese_sentences_split_and_strip_quotes():
    first, second = "子曰：“言必信，行必果，硁硁然小人哉。”", "天下大事，必作于细，天下难事，必作于易。"
    assert chinese_sentences(first + second) == [first, second]  # closing quotes stay with their sentence
    assert chinese_sentences("，" + second) == [second]
    assert chinese_sentences("春眠不觉晓。处处闻啼鸟。") == ["春眠不觉晓。处处闻啼鸟。"]  # short ones merge
    assert chinese_sentences("hello world.") == []


def test_generated_sentences_are_fixed_and_cover_digits():
    english = generated_sentences("en", 200)
    assert english == generated_sentences("en", 200) and len(set(english)) == 200
    assert sum(any(ch.isdigit() for ch in s) for s in english) > 150
    chinese = generated_sentences("zh", 100)
    assert all(is_chinese(s) and not any(ch.isdigit() for ch in s) for s in chinese)


def test_held_out_is_by_hash_so_it_survives_reordering_and_growth():
    pool = [Sentence(f"sentence number {i}", "en", "t") for i in range(500)]
    test = held_out(pool)
    assert len(test) == 30
    shuffled = pool[:]
    random.Random(3).shuffle(shuffled)
    assert held_out(shuffled) == test
    cutoff = max(text_hash(t) for t in test)
    grown = pool + [Sentence(f"another {i}", "en", "t") for i in range(2000)]
    grown = [s for s in grown if s in pool or text_hash(s.text) > cutoff]  # growth above the cut
    assert held_out(grown) == test


def test_load_sentences_from_text_files(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("First line here.\n\n  Second   line here. \nFirst line here.\n")
    pool, notes = load_sentences(sources=(), languages=("en",), text_files={"en": [mine]})
    assert [s.text for s in pool["en"]] == ["First line here.", "Second line here."]
    assert {s.source for s in pool["en"]} == {"mine.txt"} and notes == []


@pytest.mark.skipif(not (FORTUNES_DIR / "fortunes").is_file(), reason="apt-get install fortunes fortunes-zh")
def test_installed_sources_give_thousands_of_sentences_per_language():
    pool, notes = load_sentences()
    assert notes == []
    assert all(len(pool[language]) > 5000 for language in ("en", "zh", "yue"))
    assert {s.source for s in pool["en"]} == {"chatterbot", "fortunes", "words", "generated"}
