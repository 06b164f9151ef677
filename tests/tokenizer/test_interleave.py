import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepaudio.errors import TokenError
from stepaudio.tokenizer.interleave import (
    ACOUSTIC_CODES,
    AUDIO_VOCAB,
    LLM_AUDIO_OFFSET,
    SEMANTIC_CODES,
    AudioTokens,
    format_audio_tokens,
    from_llm_ids,
    group_count,
    interleave,
    parse_audio_tokens,
    split,
    to_llm_ids,
)

semantic_streams = st.lists(st.integers(0, SEMANTIC_CODES - 1), max_size=40)
acoustic_streams = st.lists(st.integers(0, ACOUSTIC_CODES - 1), max_size=60)


def test_layout_matches_the_official_example():
    # Two groups: vq02 codes go in as they are, vq06 codes shifted by 1024; a leftover of each is dropped.
    tokens = AudioTokens(semantic=[5, 6, 7, 8, 9], acoustic=[0, 1, 2, 3, 4, 4095, 10, 11])
    assert tokens.interleaved.tolist() == [5, 6, 1024, 1025, 1026, 7, 8, 1027, 1028, 5119]
    assert tokens.groups == 2 and tokens.seconds == pytest.approx(0.24)
    assert tokens.text() == "<audio_5><audio_6><audio_1024><audio_1025><audio_1026>" + (
        "<audio_7><audio_8><audio_1027><audio_1028><audio_5119>"
    )
    assert tokens.llm_ids().tolist() == [65536 + k for k in tokens.interleaved.tolist()]


@given(semantic_streams, acoustic_streams)
def test_interleave_keeps_whole_groups_in_order(semantic, acoustic):
    indices = interleave(semantic, acoustic)
    groups = group_count(len(semantic), len(acoustic))
    assert groups == min(len(semantic) // 2, len(acoustic) // 3)
    assert indices.shape == (5 * groups,) and indices.dtype == np.int64
    assert ((indices >= 0) & (indices < AUDIO_VOCAB)).all()
    sem, ac = split(indices)
    assert sem.tolist() == semantic[: 2 * groups]
    assert ac.tolist() == acoustic[: 3 * groups]


@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 1023), min_size=2, max_size=2),
            st.lists(st.integers(0, 4095), min_size=3, max_size=3),
        )
    )
)
def test_split_is_the_exact_inverse(groups):
    indices = [k for sem, ac in groups for k in sem + [1024 + a for a in ac]]
    semantic, acoustic = split(indices)
    assert interleave(semantic, acoustic).tolist() == indices


@given(st.lists(st.integers(0, AUDIO_VOCAB - 1), max_size=50))
def test_text_and_llm_ids_round_trip(indices):
    text = format_audio_tokens(indices)
    assert parse_audio_tokens(text).tolist() == indices
    ids = to_llm_ids(indices)
    assert ((ids >= LLM_AUDIO_OFFSET) & (ids < LLM_AUDIO_OFFSET + AUDIO_VOCAB)).all()
    assert from_llm_ids(ids).tolist() == indices


@given(semantic_streams, acoustic_streams)
def test_audio_tokens_round_trip_through_every_form(semantic, acoustic):
    tokens = AudioTokens(semantic, acoustic)
    whole = AudioTokens.from_interleaved(tokens.interleaved)
    assert AudioTokens.from_text(tokens.text()) == whole == AudioTokens.from_llm_ids(tokens.llm_ids())
    groups = tokens.groups
    assert whole == AudioTokens(semantic[: 2 * groups], acoustic[: 3 * groups])


def test_audio_tokens_are_read_only():
    tokens = AudioTokens([1, 2], [3, 4, 5])
    with pytest.raises(ValueError):
        tokens.semantic[0] = 7
    with pytest.raises(AttributeError):
        tokens.semantic = np.zeros(2, dtype=np.int64)


@pytest.mark.parametrize(
    "text, where",
    [
        ("<audio_1><audio_2", "character 9"),
        ("<audio_1> <audio_2>", "character 9"),
        ("hello<audio_1>", "character 0"),
        ("<audio_01>", "character 0"),
        ("<audio_-1>", "character 0"),
        ("<Audio_1>", "character 0"),
        ("<audio_>", "character 0"),
    ],
)
def test_malformed_strings_say_where(text, where):
    with pytest.raises(TokenError, match=where):
        parse_audio_tokens(text)


def test_out_of_range_values_are_refused():
    with pytest.raises(TokenError, match="5120 is outside 0..5119"):
        parse_audio_tokens("<audio_5120>")
    with pytest.raises(TokenError, match=r"semantic codes\[1\] = 1024"):
        interleave([0, 1024], [0, 0, 0])
    with pytest.raises(TokenError, match="acoustic codes"):
        AudioTokens([0, 1], [0, -1, 0])
    with pytest.raises(TokenError, match="not an audio token"):
        from_llm_ids([65536, 1234])
    with pytest.raises(TokenError, match="integers"):
        interleave([0.5, 1.0], [0, 0, 0])
    with pytest.raises(TokenError, match="string"):
        parse_audio_tokens(b"<audio_1>")


def test_broken_groups_are_refused():
    with pytest.raises(TokenError, match="whole groups of 5"):
        split([1, 2, 1024, 1025])
    with pytest.raises(TokenError, match="group 1"):
        split([1, 2, 1024, 1025, 1026, 1, 1024, 1025, 1026, 1027])
    with pytest.raises(TokenError, match="group 0"):
        split([1, 2, 3, 1025, 1026])


def test_empty_streams():
    tokens = AudioTokens([], [])
    assert tokens.groups == 0 and tokens.text() == "" and tokens.llm_ids().size == 0
    assert AudioTokens.from_text("") == tokens
