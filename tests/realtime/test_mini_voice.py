"""The mini voice path end to end on the example conversation's first question (real models)."""

from pathlib import Path

import pytest

from stepaudio.audio import load_audio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "conversation"


@pytest.mark.slow
def test_a_spoken_question_gets_a_spoken_answer():
    from stepaudio.errors import ModelNotFound
    from stepaudio.realtime.engine import ChatEngine
    from stepaudio.realtime.piper_speaker import PiperSpeaker
    from stepaudio.realtime.turn import answer_turn_sync
    from stepaudio.tts_engines import EngineUnavailable

    try:
        engine = ChatEngine.load("mini", speaker=PiperSpeaker())
    except (ModelNotFound, EngineUnavailable) as missing:
        pytest.skip(str(missing))
    samples, rate = load_audio(EXAMPLE / "user_1.flac")
    answer = answer_turn_sync(engine, audio=samples, sample_rate=rate)
    assert "capital of france" in answer.transcript.lower()
    assert "paris" in answer.text.lower()
    assert answer.sample_rate == engine.speaker.sample_rate and len(answer.audio) > answer.sample_rate


@pytest.mark.slow
def test_piper_speaks_at_the_speed_option_and_the_speed_tags():
    from stepaudio.realtime.piper_speaker import PiperSpeaker
    from stepaudio.tts_engines import EngineUnavailable

    try:
        speaker = PiperSpeaker()
    except EngineUnavailable as missing:
        pytest.skip(str(missing))

    def samples(**style) -> int:
        return sum(len(chunk) for chunk in speaker.stream("Hello there, how are you today?", **style))

    normal = samples()
    assert samples(speed=1.25) < 0.9 * normal
    assert samples(tags=["慢速2"]) > 1.4 * normal  # rate 0.6
