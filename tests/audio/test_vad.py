import json

import numpy as np
import pytest

from conftest import stream_in_chunks
from stepaudio.audio import load_audio
from stepaudio.audio.vad import EventKind, SileroVAD, VADParams
from stepaudio.errors import AudioError, OptionError

STARTED, PAUSE, RESUMED, END = (
    EventKind.SPEECH_STARTED,
    EventKind.PAUSE,
    EventKind.SPEECH_RESUMED,
    EventKind.END_OF_TURN,
)
PARAMS = VADParams(start_ms=200, pause_ms=300, end_ms=1500)


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD.load("mini")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), dtype=np.float32)


@pytest.fixture
def two_phrases(speech_path) -> np.ndarray:
    """1 s of silence, a sentence, a 0.6 s gap, the sentence again, 2 s of silence."""
    speech, _ = load_audio(speech_path)
    return np.concatenate([silence(1.0), speech, silence(0.6), speech, silence(2.0)])


def events(vad, samples, chunks, params=PARAMS):
    return [event for piece in stream_in_chunks(vad.stream(params), samples, chunks) for event in piece]


def test_a_turn_with_a_pause_in_it(vad, two_phrases, speech_path):
    found = events(vad, two_phrases, [len(two_phrases)])
    assert [e.kind for e in found] == [STARTED, PAUSE, RESUMED, PAUSE, END]
    speech_seconds = len(load_audio(speech_path)[0]) / 16000
    started, pause, resumed, _, end = (e.time for e in found)
    assert 1.0 <= started < 1.5  # the clip opens with a little silence of its own
    assert 1.0 + speech_seconds - 0.5 < pause < 1.0 + speech_seconds + 0.6  # inside the gap
    assert pause < resumed <= 1.0 + speech_seconds + 0.6 + 0.5
    assert 2.0 + 2 * speech_seconds < end <= len(two_phrases) / 16000  # 1.5 s into the final silence


def test_the_same_events_for_any_chunking(vad, two_phrases):
    whole = events(vad, two_phrases, [len(two_phrases)])
    assert events(vad, two_phrases, [160]) == whole
    assert events(vad, two_phrases, [4000, 333, 17]) == whole


def test_a_short_burst_does_not_start_a_turn(vad, speech_path):
    speech, _ = load_audio(speech_path)
    middle = len(speech) // 2
    burst = speech[middle : middle + 1600]  # 100 ms of speech: a cough or a click, not a turn
    assert events(vad, np.concatenate([silence(1.0), burst, silence(1.0)]), [512]) == []


def test_end_of_turn_after_a_long_silence_and_at_flush(vad, speech_path):
    speech, _ = load_audio(speech_path)
    long_silence = events(vad, np.concatenate([speech, silence(2.0)]), [1024])
    assert [e.kind for e in long_silence] == [STARTED, PAUSE, END]
    cut_off = events(vad, speech[: len(speech) * 2 // 3], [1024])
    assert [e.kind for e in cut_off][0] == STARTED and cut_off[-1].kind == END


def test_bad_settings_and_input(vad):
    with pytest.raises(OptionError, match="bad VAD settings"):
        VADParams(threshold=0.3, negative_threshold=0.5)
    with pytest.raises(AudioError, match="finite 16 kHz mono"):
        vad.stream().step(np.full(600, np.nan, dtype=np.float32))


def test_cli(speech_path, capsys):
    from stepaudio.cli import main

    assert main(["vad", str(speech_path), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [e["event"] for e in found] == ["speech_started", "end_of_turn"]
    assert main(["vad", str(speech_path), "--threshold", "0.2"]) == 1  # below the negative threshold
    assert "bad VAD settings" in capsys.readouterr().err
