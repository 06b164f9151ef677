"""The text front-end: numbers and punctuation spelled out as they are read, sentence splitting."""

import pytest

from stepaudio.tts.text import chinese_number, english_number, guess_language, normalize, split_sentences


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (342, "three hundred forty two"),
        (91310, "ninety one thousand three hundred ten"),
    ],
)
def test_english_cardinals(number, words):
    assert english_number(number) == words


@pytest.mark.parametrize(
    ("number", "characters"),
    [(0, "零"), (12, "十二"), (225, "二百二十五"), (1005, "一千零五"), (10500, "一万零五百"), (100003, "十万零三")],
)
def test_chinese_cardinals(number, characters):
    assert chinese_number(number) == characters


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("It costs $808.03.", "It costs eight hundred eight dollars and three cents."),
        ("The meeting is at 1:50, not 12:00.", "The meeting is at one fifty, not twelve o'clock."),
        ("Carol was born in 1906.", "Carol was born in nineteen oh six."),
        (
            "There are 91,310 people, 45% of them (mostly) happy!",
            "There are ninety one thousand three hundred ten people, forty five percent of them mostly happy!",
        ),
        ("Call 0 4 7 or 007.", "Call zero four seven or zero zero seven."),
        ("the 3rd time, pi is 3.14", "the third time, pi is three point one four"),
        ("“Hi,”  she said…", "Hi, she said..."),
    ],
)
def test_english_normalisation(text, spoken):
    assert normalize(text, "en") == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("它的公轉週期是大約225個地球日。", "它的公轉週期是大約二百二十五個地球日。"),
        ("温度是3.5度, 时间10:05, 增长12%!", "温度是三点五度，时间十点零五分，增长百分之十二！"),
        ("“好”（测试）", "好测试"),
    ],
)
def test_mandarin_normalisation(text, spoken):
    assert normalize(text, "zh") == spoken


def test_language_is_guessed_from_the_script():
    assert guess_language("Hello there.") == "en"
    assert guess_language("OK，你好") == "zh"
    assert normalize("你好, 1个") == "你好，一个"  # guessed: Chinese punctuation and numbers


def test_a_leading_tag_cannot_come_from_the_text():
    assert normalize("(RAP) hello", "en") == "RAP hello"
    assert normalize("（哼唱）你好", "zh") == "哼唱你好"


def test_sentences_split_after_final_marks_but_not_inside_numbers():
    text = 'Hello there. It is 3.5 m, U.S.A. "Yes!" he said. How are you? 你好。再见！ok'
    assert split_sentences(text) == [
        "Hello there.",
        "It is 3.5 m, U.S.A.",
        '"Yes!"',
        "he said.",
        "How are you?",
        "你好。",
        "再见！",
        "ok",
    ]


def test_long_sentences_split_between_clauses_then_words():
    clauses = split_sentences("one two three, four five six, seven eight nine", max_chars=16)
    assert clauses == ["one two three,", "four five six,", "seven eight nine"]
    words = split_sentences("alpha beta gamma delta epsilon", max_chars=12)
    assert all(len(piece) <= 12 for piece in words) and " ".join(words) == "alpha beta gamma delta epsilon"
    assert split_sentences("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]
    assert split_sentences("  ") == []


def test_chinese_pieces_are_shorter_since_each_character_takes_longer_to_say():
    pieces = split_sentences("我" * 130 + "。")
    assert [len(p) for p in pieces] == [60, 60, 11]
