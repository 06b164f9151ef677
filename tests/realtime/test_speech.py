"""Speech output bookkeeping: sentences for the TTS, the playback clock, the words heard."""

import pytest

from stepaudio.realtime.speech import LONG_CLAUSE_WORDS, PlaybackClock, SentenceSplitter, SpokenText, speakable


def test_sentences_leave_as_soon_as_they_end():
    splitter = SentenceSplitter()
    out = []
    for piece in ["The capital", " is Paris", ". It is", " lovely!", " And big"]:
        out.append(splitter.push(piece))
    assert out == [[], [], ["The capital is Paris."], [], ["It is lovely!"]]
    assert splitter.flush() == ["And big"] and splitter.flush() == []


def test_the_first_clause_and_long_clauses_go_before_the_full_stop():
    splitter = SentenceSplitter()
    assert splitter.push("Well, the") == []  # one word: too short to say alone
    assert splitter.push(" answer is, I think, yes. ") == ["Well, the answer is,", "I think, yes."]
    clause = " ".join(["word"] * LONG_CLAUSE_WORDS)
    assert splitter.push(f" {clause}, and then") == [clause + ","]
    assert splitter.push("short, bits") == []


def words(splitter: SentenceSplitter, text: str) -> list[str]:
    """The pieces out when the LM writes `text` a word at a time."""
    pieces = [piece for word in text.split(" ") for piece in splitter.push(word + " ")]
    return pieces + splitter.flush()


def test_a_long_first_sentence_starts_with_its_first_words_alone():
    assert words(SentenceSplitter(), "The most famous tower in Paris is Notre Dame. It is tall.") == [
        "The most famous tower",
        "in Paris is Notre Dame.",
        "It is tall.",
    ]
    # ending within two more words: kept whole, no word left alone after the cut
    assert words(SentenceSplitter(), "The capital of France is Paris. It is big.") == [
        "The capital of France is Paris.",
        "It is big.",
    ]


def test_markup_is_not_read_aloud():
    assert speakable("**Paris**  is  the #capital") == "Paris is the capital"


def test_words_heard_follow_the_audio_played():
    spoken = SpokenText()
    spoken.start("one two three four.")
    spoken.add_audio(2.0)
    spoken.start("five six.")
    spoken.add_audio(1.0)
    spoken.start("seven.")  # not spoken yet
    assert spoken.heard(0.0) == ""
    assert spoken.heard(1.0) == "one two"
    assert spoken.heard(2.5) == "one two three four. five"
    assert spoken.heard(60) == "one two three four. five six."


def test_playback_clock_plays_back_to_back_and_waits_when_dry():
    clock = PlaybackClock()
    clock.send(1.0, now=10.0)
    clock.send(1.0, now=10.2)  # queued behind the first
    assert clock.ends() == 12.0 and clock.played(11.5) == pytest.approx(1.5)
    clock.send(0.5, now=20.0)  # the player ran dry: it plays on arrival
    assert clock.ends() == 20.5 and clock.played(20.25) == pytest.approx(2.25) and clock.sent == 2.5
