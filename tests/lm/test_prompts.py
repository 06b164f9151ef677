import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepaudio.lm.prompts import (
    ASR_SYSTEM_PROMPT,
    CHATML,
    STEP1_CHAT,
    TAGS,
    asr_messages,
    audio_text,
    leading_tag,
    tts_system_prompt,
)

CONVERSATION = [
    {"role": "user", "content": "你好，我是小明。"},
    {"role": "assistant", "content": "Hello!\nHow can I help?"},
    {"role": "user", "content": "<audio_1><audio_2000>"},
]


def test_step1_chat_template_text():
    """As the release's StepAudio.apply_chat_template (stepaudio.py:53-74): no system turn of its own."""
    text = STEP1_CHAT.render(CONVERSATION[:1])
    assert text == "<|BOT|>human\n你好，我是小明。<|EOT|><|BOT|>assistant\n"
    assert STEP1_CHAT.render(CONVERSATION) == (
        "<|BOT|>human\n你好，我是小明。<|EOT|><|BOT|>assistant\nHello!\nHow can I help?<|EOT|>"
        "<|BOT|>human\n<audio_1><audio_2000><|EOT|><|BOT|>assistant\n"
    )
    with_system = STEP1_CHAT.render([{"role": "system", "content": "Be short."}, *CONVERSATION[:1]], False)
    assert with_system == "<|BOT|>system\nBe short.<|EOT|><|BOT|>human\n你好，我是小明。<|EOT|>"


def test_chatml_equals_the_smollm2_gguf_template():
    """Our ChatML rendering equals the Jinja chat template stored in the SmolLM2 GGUF."""
    jinja2 = pytest.importorskip("jinja2")
    gguf = pytest.importorskip("gguf")
    from stepaudio.errors import ModelNotFound
    from stepaudio.models.store import resolve_model

    try:
        path = resolve_model("mini").require("chat_lm")
    except ModelNotFound as error:
        pytest.skip(str(error))
    template = gguf.GGUFReader(path).fields["tokenizer.chat_template"].contents()
    render = jinja2.Environment().from_string(template).render
    for messages in (CONVERSATION[:1], CONVERSATION, [{"role": "system", "content": "Be short."}, *CONVERSATION]):
        for generation in (True, False):
            expected = render(messages=messages, add_generation_prompt=generation)
            assert CHATML.render(messages, generation) == expected


@pytest.mark.parametrize("chat", [STEP1_CHAT, CHATML])
def test_render_then_parse_round_trips(chat):
    for generation in (True, False):
        parsed = chat.parse(chat.render(CONVERSATION, generation))
        default = [{"role": "system", "content": chat.default_system}] if chat.default_system else []
        assert parsed == [*default, *CONVERSATION]


text_without_markers = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<|>"), min_size=0, max_size=40
)


@given(st.lists(st.tuples(st.sampled_from(["user", "assistant"]), text_without_markers), min_size=1, max_size=4))
def test_round_trip_property(turns):
    messages = [{"role": "system", "content": "sys"}] + [{"role": r, "content": c} for r, c in turns]
    for chat in (STEP1_CHAT, CHATML):
        assert chat.parse(chat.render(messages)) == messages


def test_parse_refuses_foreign_text_and_unknown_roles():
    with pytest.raises(ValueError, match="not a step1 conversation"):
        STEP1_CHAT.parse("hello <|BOT|>human\nhi<|EOT|>")
    with pytest.raises(ValueError, match="unknown role"):
        CHATML.render([{"role": "robot", "content": "beep"}])


def test_asr_prompt():
    messages = asr_messages([3, 1024, 5119])
    assert messages == [
        {"role": "system", "content": ASR_SYSTEM_PROMPT},
        {"role": "user", "content": "<audio_3><audio_1024><audio_5119>"},
    ]
    assert STEP1_CHAT.render(messages).startswith(
        "<|BOT|>system\n请记录下你所听到的语音内容。<|EOT|><|BOT|>human\n<audio_3>"
    )
    with pytest.raises(ValueError, match="0..5119"):
        audio_text([5120])


def test_instruction_tags_and_system_prompts():
    assert len(TAGS) == 19 and "粤语" in TAGS and "快速2" in TAGS
    assert leading_tag("(RAP)yo") == "RAP" and leading_tag("（哼唱）啦啦") == "哼唱"
    assert leading_tag("(高兴1)(粤语)你好") == "高兴1" and leading_tag("no tag (RAP)") == ""
    assert tts_system_prompt("(RAP)yo").startswith("请参考对话历史里的音色，用RAP方式")
    assert tts_system_prompt("（哼唱）啦啦").startswith("请参考对话历史里的音色，用哼唱的方式")
    plain = tts_system_prompt("你好")
    assert plain.startswith("作为一名卓越的声优演员") and all(f'- "{tag}"' in plain for tag in TAGS)
    assert "[Tingting]" in tts_system_prompt("你好", "Tingting") and "[" not in plain
