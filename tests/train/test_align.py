"""`stepaudio data align`: Whisper tiny.en times the words of real read speech, once per utterance."""

import pytest

from conftest import LIBRIVOX
from stepaudio.audio import load_audio, save_audio
from stepaudio.cli import main
from stepaudio.train.data.manifest import Utterance, read_manifest, write_manifest
from stepaudio.tts.text import normalize

CLIPS = {  # LibriVox clip -> its transcript (after pocketsphinx-testdata's `transcription`)
    "0870": "and mister john dashwood had then leisure to consider how much there might be prudently in his "
    "power to do for them",
    "0880": "He was not an ill-disposed young man.",  # punctuation, which Whisper times as words of its own
}


@pytest.fixture
def corpus(tmp_path):
    utterances = []
    for clip, text in CLIPS.items():
        path = LIBRIVOX / f"sense_and_sensibility_01_austen_64kb-{clip}.wav"
        if not path.is_file():
            pytest.skip("LibriVox test clips not installed: apt-get install pocketsphinx-testdata")
        samples, rate = load_audio(path, 16000)
        save_audio(tmp_path / f"{clip}.flac", samples, rate)
        utterances.append(
            Utterance(f"{clip}.flac", text, "en", "real:austen", 1.0, 1.0, len(samples) / rate, "train", "x")
        )
    utterances.append(Utterance("0870.flac", "你好", "zh", "real:austen", 1.0, 1.0, 7.1, "train", "x"))
    write_manifest(tmp_path / "manifest.jsonl", utterances)
    return tmp_path


def test_english_words_are_timed_in_order_and_aligning_again_redoes_nothing(corpus, capsys):
    main(["data", "align", str(corpus)])
    assert "aligned 2 utterances (en); 0 could not be aligned" in capsys.readouterr().out
    english, chinese = read_manifest(corpus)[:2], read_manifest(corpus)[2]
    for utterance in english:
        words = utterance.words
        assert [word for word, _, _ in words] == normalize(utterance.text, "en").split()
        times = [t for _, start, end in words for t in (start, end)]
        assert times == sorted(times) and 0 <= times[0] and times[-1] <= utterance.duration + 0.1
    timed = {word: (start, end) for word, start, end in english[0].words}
    # in the 7.1-s clip Whisper put "dashwood" at 1.06-1.70 s and the last word, "them", at 6.74-7.08 s
    assert 0.8 < timed["dashwood"][0] < 1.4 and timed["them"][1] > 6.5
    assert chinese.words is None  # Whisper tiny.en aligns English only

    main(["data", "align", str(corpus)])
    assert "aligned 0 utterances" in capsys.readouterr().out
