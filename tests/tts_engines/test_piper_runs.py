"""A long sentence's phonemes are rendered in bounded runs cut between words (the ONNX input, and so
the memory of one run, stays bounded however many phonemes espeak makes of a text)."""

from stepaudio.tts_engines.piper import phoneme_runs


def test_runs_are_cut_after_a_word_and_lose_nothing():
    phonemes = list("nˈaɪn hˈʌndɹɪd nˈaɪnti nˈaɪn ") * 40
    runs = phoneme_runs(phonemes, limit=50)
    assert sum(runs, []) == phonemes
    assert all(len(run) <= 50 for run in runs)
    assert all(run[-1] == " " for run in runs)


def test_a_word_longer_than_a_run_is_cut_inside():
    assert phoneme_runs(list("a" * 120), limit=50) == [list("a" * 50), list("a" * 50), list("a" * 20)]


def test_a_short_sentence_is_one_run():
    assert phoneme_runs(list("hɛlˈoʊ."), limit=50) == [list("hɛlˈoʊ.")]
    assert phoneme_runs([], limit=50) == []
