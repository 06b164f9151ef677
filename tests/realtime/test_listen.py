"""Turn transcripts: a Whisper loop is cut back to the phrase, real repetition stays."""

import pytest

from stepaudio.realtime.listen import collapse_repeats


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Great. Great. Great.", "Great."),
        ("How tall is it? How tall is it? How tall is", "How tall is it?"),  # cut by the token limit
        ("no no", "no no"),
        ("I said no no no to him", "I said no no no to him"),
        ("Hi there. Hi there, friend", "Hi there. Hi there, friend"),
        ("", ""),
    ],
)
def test_only_a_looped_transcript_collapses(text, expected):
    assert collapse_repeats(text) == expected
