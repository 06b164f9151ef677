"""Tags and the TTS prompt: the official layout, with a compact vocabulary's audio offset."""

import pytest

from stepaudio.errors import OptionError
from stepaudio.lm.prompts import tts_system_prompt
from stepaudio.lm.tokenizer import SentencePieceTokenizer
from stepaudio.train.tts_vocab import fixed_prompt_strings, train_vocabulary
from stepaudio.tts.prompt import check_tags, request_ids, split_tags, tagged_text


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = train_vocabulary(
        ["hello there", "你好，今天天气很好。"] * 5, tmp_path_factory.mktemp("vocab") / "t.model", 800
    )
    return SentencePieceTokenizer(path, audio_offset=800)


def test_tags_are_checked_deduplicated_and_put_in_the_official_order():
    assert check_tags(["快速1", "(粤语)", "（高兴1）", "RAP", "粤语"]) == ("RAP", "高兴1", "粤语", "快速1")
    assert tagged_text("hi", ["英文", "慢速2"]) == "(英文)(慢速2)hi"
    with pytest.raises(OptionError, match="unknown style tag 'fast'"):
        check_tags(["fast"])


def test_request_has_the_official_turns_and_audio_after_the_offset(tokenizer):
    ids = request_ids(tokenizer, "hello there", ["英文"], "你好", [0, 5, 5119], speaker=None)
    text = tokenizer.decode(ids)
    assert text.startswith("<|BOT|>system\n" + tts_system_prompt("(英文)hello there"))
    assert text.endswith(
        "<|BOT|>human\n你好<|EOT|><|BOT|>assistant\n<audio_0><audio_5><audio_5119><|EOT|>"
        "<|BOT|>human\n(英文)hello there<|EOT|><|BOT|>assistant\n"
    )
    assert [i for i in ids if i >= 800] == [800, 805, 800 + 5119]  # audio ids follow the 800 text pieces
    assert ids[0] == tokenizer.bos_id


def test_music_tags_pick_their_system_prompt(tokenizer):
    rap = tokenizer.decode(request_ids(tokenizer, "yo", check_tags(["快速1", "RAP"]), "hi", [1], speaker="Tingting"))
    assert "用RAP方式" in rap and "(RAP)(快速1)yo" in rap and "Tingting" not in rap
    named = tokenizer.decode(request_ids(tokenizer, "yo", [], "hi", [1], speaker="Tingting"))
    assert "使用[Tingting]的声音" in named
    # the request keeps the order it is given: like the release, only a leading RAP picks the mode
    second = tokenizer.decode(request_ids(tokenizer, "yo", ["快速1", "RAP"], "hi", [1], speaker="Tingting"))
    assert "(快速1)(RAP)yo" in second and "用RAP方式" not in second and "使用[Tingting]的声音" in second
    wide = tokenizer.decode(request_ids(tokenizer, "我踏上", ["RAP"], "hi", [1], wide=True))
    assert "<|BOT|>human\n（RAP）我踏上<|EOT|>" in wide and "用RAP方式" in wide
    humming = tokenizer.decode(request_ids(tokenizer, "啦啦", ["哼唱"], "hi", [1], wide=True))
    assert "用哼唱的方式" in humming


@pytest.mark.parametrize(
    ("text", "tags", "body"),
    [
        ("(高兴1)Hello there.", ("高兴1",), "Hello there."),
        ("（RAP）我踏上自由的征途", ("RAP",), "我踏上自由的征途"),  # the release's own example
        ("(高兴1)(粤语）（快速1)你好", ("高兴1", "粤语", "快速1"), "你好"),  # either width, even mixed
        (" (高兴1) (慢速2) Hi", ("高兴1", "慢速2"), " Hi"),
        ("(高兴1)(RAP)yo", ("高兴1", "RAP"), "yo"),  # written order kept: 高兴1 leads, so no music mode
        ("(note) hi", (), "(note) hi"),  # not a tag: words
        ("(高兴1)(note)(RAP) hi", ("高兴1",), "(note)(RAP) hi"),  # the run ends at the first non-tag
        ("(rap)yo", (), "(rap)yo"),  # tags are exact names
        ("( RAP )yo", (), "( RAP )yo"),
        ("(高兴1 hi", (), "(高兴1 hi"),  # unclosed
        ("Hi (高兴1) there", (), "Hi (高兴1) there"),  # only at the start
        ("(高兴1)", ("高兴1",), ""),
    ],
)
def test_leading_inline_tags_are_taken_out_of_the_text(text, tags, body):
    assert split_tags(text) == (tags, body)


def test_inline_tags_merge_with_the_given_ones():
    assert split_tags("(高兴1)x", ["快速1", "（粤语）"]) == (("高兴1", "粤语", "快速1"), "x")
    assert split_tags("(高兴1)x", ["RAP"]) == (("RAP", "高兴1"), "x")  # a music tag asked for leads
    assert split_tags("(RAP)x", ["快速1"]) == (("RAP", "快速1"), "x")
    assert split_tags("(RAP)(RAP)x", ["RAP"]) == (("RAP",), "x")
    assert split_tags("x", ["快速1", "RAP"]) == (("RAP", "快速1"), "x")
    with pytest.raises(OptionError, match="unknown style tag 'shout'"):
        split_tags("(高兴1)x", ["(shout)"])
    with pytest.raises(OptionError, match="unknown style tag 'shout'"):
        tagged_text("x", ["shout"])
    assert tagged_text("x", ["高兴1", "RAP", "高兴1"], wide=True) == "（高兴1）（RAP）x"


def test_the_vocabulary_gives_the_fixed_prompt_few_pieces(tokenizer):
    system = fixed_prompt_strings()[0]
    assert len(system) > 300 and len(tokenizer.encode(system)) < len(system) / 3
    assert tokenizer.decode(tokenizer.encode("未见过的字 unseen")) == "未见过的字 unseen"  # byte fallback
