import base64
import json

import numpy as np
import pytest

from conftest import tone
from stepaudio.audio.vad import CONVERSATION_VAD, VADParams
from stepaudio.errors import OptionError, RequestError
from stepaudio.realtime.events import AudioDelta, ResponseCreated, ResponseDone, TranscriptDone
from stepaudio.realtime.session import SessionConfig
from stepaudio.serve import protocol
from stepaudio.serve.protocol import AudioFormat, StreamResampler


def test_pcm16_round_trip():
    samples = tone(0.1, 24000)
    decoded = protocol.decode_pcm16(protocol.encode_pcm16(samples))
    assert decoded.dtype == np.float32 and len(decoded) == len(samples)
    assert np.abs(decoded - samples).max() < 1 / 16384
    assert protocol.decode_pcm16(protocol.encode_pcm16(np.array([2.0, -2.0], np.float32))).tolist() == pytest.approx(
        [32767 / 32768, -1.0]
    )  # clipped, not wrapped


@pytest.mark.parametrize(
    "audio,problem",
    [(None, "base64 string"), ("not base64!", "not valid base64"), (base64.b64encode(b"abc").decode(), "2 bytes")],
)
def test_bad_pcm16_is_a_protocol_error(audio, problem):
    with pytest.raises(RequestError, match=problem) as error:
        protocol.decode_pcm16(audio)
    assert error.value.code == "invalid_audio"


@pytest.mark.parametrize(
    "message,code",
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_event"),
        ('{"audio": "x"}', "invalid_event"),
        ("[" * 100000, "invalid_json"),
        ('{"type": "session.update", "session": {"speed": Infinity}}', "invalid_json"),
        ('{"type": "x", "n": NaN}', "invalid_json"),
    ],
)
def test_malformed_client_events(message, code):
    with pytest.raises(RequestError) as error:
        protocol.parse_client_event(message)
    assert error.value.code == code


def test_streamed_resampling_equals_one_shot():
    """Chunks resampled with the stream's state join into what resampling all at once gives."""
    from stepaudio.audio import resample

    samples = tone(1.0, 22050, freq=300)
    stream = StreamResampler(22050, 24000)
    pieces = [stream.step(samples[i : i + 1000]) for i in range(0, len(samples), 1000)] + [stream.flush()]
    joined = np.concatenate(pieces)
    whole = resample(samples, 22050, 24000)
    assert abs(len(joined) - len(whole)) <= 1
    n = min(len(joined), len(whole))
    assert np.abs(joined[:n] - whole[:n]).max() < 1e-3


def test_session_update_beta_and_ga_shapes():
    config, audio = SessionConfig(), AudioFormat()
    turn = {"type": "server_vad", "threshold": 0.3, "silence_duration_ms": 500}
    update = {"voice": "Alice", "instructions": "Be brief.", "tags": ["(快速1)"], "speed": 0.8, "turn_detection": turn}
    config, audio = protocol.apply_session_update(update, config, audio, 100)
    assert (config.voice, config.instructions, config.tags, config.speed) == ("Alice", "Be brief.", ("快速1",), 0.8)
    assert config.vad == VADParams(
        threshold=0.3, negative_threshold=0.3, pause_ms=CONVERSATION_VAD.pause_ms, end_ms=500
    )
    assert audio == AudioFormat()
    config, audio = protocol.apply_session_update(
        {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 48000}, "turn_detection": None},
                   "output": {"format": {"type": "audio/pcm", "rate": 16000}, "voice": "Tingting"}}},
        config, audio, 100,
    )  # fmt: skip
    assert audio == AudioFormat(48000, 16000) and config.voice == "Tingting" and not config.turn_detection
    assert config.instructions == "Be brief."  # untouched fields stay
    echoed = protocol.session_object("sess_1", "mini", config, audio)
    assert echoed["audio"]["input"]["format"]["rate"] == 48000 and echoed["turn_detection"] is None
    json.dumps(echoed)


@pytest.mark.parametrize(
    "update,problem",
    [
        ({"input_audio_format": "g711_ulaw"}, "only pcm16"),
        ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 5}}}}, "outside"),
        ({"audio": {"output": {"format": {"type": "audio/pcm", "rate": "24k"}}}}, "whole number"),
        ({"turn_detection": {"type": "semantic_vad"}}, "server_vad"),
        ({"turn_detection": {"threshold": 1.5}}, "outside 0..1"),
        ({"turn_detection": {"threshold": 0.3, "negative_threshold": 0.6}}, "bad VAD settings"),
        ({"turn_detection": {"silence_duration_ms": 1e12}}, "outside 32..10000"),
        ({"turn_detection": {"start_ms": 1e15}}, "outside 0..5000"),
        ({"audio": {"output": {"format": {"type": "audio/pcm", "rate": 384_000}}}}, "outside 8000..48000"),
        ({"tags": ["快速1"] * 10_000}, "style tags given"),
        ({"instructions": "be \x00 brief"}, "control character U\\+0000"),
        ({"instructions": "be \ud800 brief"}, "lone surrogate"),
        ({"turn_detection": {"silence_duration_ms": "long"}}, "must be a number"),
        ({"tags": ["大声"]}, "unknown style tag"),
        ({"audio": {"output": {"speed": 3}}}, "speed must be between"),
        ({"speed": "fast"}, "must be a number"),
        ({"instructions": "x" * 101}, "over the limit"),
        ({"voice": 7}, "must be a string"),
        ("not an object", "must be an object"),
    ],
)
def test_bad_session_updates(update, problem):
    with pytest.raises(OptionError, match=problem):  # a RequestError, or the tag/speed check's own error
        protocol.apply_session_update(update, SessionConfig(), AudioFormat(), 100)
    with pytest.raises(RequestError, match="list of strings"):
        protocol.apply_session_update({"tags": "快速1"}, SessionConfig(), AudioFormat(), 100)


def test_user_text_items():
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}
    assert protocol.user_text(item, 100) == "hello"
    for bad in (
        {**item, "role": "assistant"},
        {**item, "content": [{"type": "input_audio", "audio": ""}]},
        {**item, "content": []},
    ):
        with pytest.raises(RequestError):
            protocol.user_text(bad, 100)


def test_server_events_carry_openai_fields():
    assert protocol.server_event(ResponseCreated("resp_1"))["response"] == {
        "id": "resp_1", "object": "realtime.response", "status": "in_progress", "output": []
    }  # fmt: skip
    done = protocol.server_event(ResponseDone("resp_1", "cancelled", "The capital"))
    assert (
        done["response"]["status"] == "cancelled"
        and done["response"]["output"][0]["content"][0]["transcript"] == "The capital"
    )
    completed = protocol.server_event(TranscriptDone("item_1", "hi"))
    assert completed == {"type": TranscriptDone.type, "item_id": "item_1", "transcript": "hi", "content_index": 0}
    assert AudioDelta.type == "response.output_audio.delta"
