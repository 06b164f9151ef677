"""The text context: pinned system prompt, oldest-first eviction, compression ratio, cut turns."""

import pytest

from stepaudio.errors import OptionError
from stepaudio.realtime.context import ContextManager, Turn
from stepaudio.tokenizer.interleave import AUDIO_TOKENS_PER_SECOND


def words(messages) -> int:
    """A stand-in tokenizer: one token per word, two per message for the template."""
    return sum(len(m["content"].split()) + 2 for m in messages)


def test_oldest_turns_go_first_and_the_system_prompt_stays():
    context = ContextManager(words, budget=30, system="be brief")
    for i in range(4):
        context.add(Turn(f"u{i}", "user", f"question number {i} here", 2.0))
        context.add(Turn(f"a{i}", "assistant", f"answer number {i} here", 2.0))
    messages = context.messages("the new question")
    assert words(messages) <= 30
    assert messages[0] == {"role": "system", "content": "be brief"}
    assert messages[-1] == {"role": "user", "content": "the new question"}
    assert [m["content"] for m in messages[1:-1]] == [
        "answer number 2 here",
        "question number 3 here",
        "answer number 3 here",
    ]
    assert context.evicted == 5 and context.turns[0].item_id == "a2"


def test_a_turn_alone_over_the_budget_is_an_option_error():
    context = ContextManager(words, budget=5)
    with pytest.raises(OptionError, match="over the context budget"):
        context.messages("far too many words for this tiny budget")


def test_compression_ratio_counts_audio_tokens_of_every_turn_against_text_tokens():
    context = ContextManager(words, budget=1000)
    assert context.compression_ratio() == 0.0
    context.add(Turn("u", "user", "one two three four", 3.0))  # 4 words + 2 = 6 tokens, 125 audio tokens
    context.add(Turn("a", "assistant", "five six", 1.8))  # 4 tokens, 75 audio tokens
    assert context.compression_ratio() == pytest.approx(4.8 * AUDIO_TOKENS_PER_SECOND / 10)


def test_cut_replaces_an_assistant_turn_with_what_was_heard():
    context = ContextManager(words, budget=1000)
    context.add(Turn("a1", "assistant", "a long answer nobody heard", 2.0))
    context.cut("a1", "a long")
    assert context.find("a1").text == "a long" and context.messages()[-1]["content"] == "a long"
