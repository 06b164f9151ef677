"""The HTTP routes on fakes (TTS), the real mini ASR and, in the slow tests, the real mini chat LM."""

import base64
import io
import json

import numpy as np
import pytest
import soundfile
from fakes import FAKE_TRANSCRIPT, TTS_RATE, fake_models
from fastapi.testclient import TestClient

from stepaudio.serve.app import create_app
from stepaudio.serve.settings import Limits, ServeSettings


def client(models=None, **settings) -> TestClient:
    app = create_app(models or fake_models(), ServeSettings(model="fake", **settings))
    return TestClient(app, base_url="http://localhost")


def assert_error(response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["type"] and error["code"]


def test_health_models_voices_and_page():
    http = client()
    health = http.get("/health").json()
    assert health == {"status": "ok", "model": "fake", "sessions": 0, "max_sessions": 4, "api_key_required": False}
    assert http.get("/v1/models").json()["data"][0]["id"] == "fake"
    voices = http.get("/v1/voices").json()
    assert (
        voices["voices"] == ["Tingting", "Alice"]
        and voices["default"] == "Tingting"
        and "快速1" in voices["tags"]["speed"]
    )
    page = http.get("/")
    assert page.status_code == 200 and "stepaudio voice chat" in page.text
    for asset in ("app.js", "worklets.js", "style.css"):
        assert http.get(f"/static/{asset}").status_code == 200


def test_speech_wav_and_streamed_pcm():
    http = client()
    wav = http.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hello there.", "voice": "Alice"})
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    samples, rate = soundfile.read(io.BytesIO(wav.content), dtype="float32")
    assert rate == TTS_RATE and len(samples) == int(0.05 * len("Hellothere") * TTS_RATE)
    pcm = http.post("/v1/audio/speech", json={"input": "Hello there.", "response_format": "pcm", "tags": ["快速1"]})
    assert pcm.status_code == 200 and pcm.headers["content-type"] == "audio/pcm"
    seconds = len(pcm.content) / 2 / 24000  # OpenAI's pcm: 24 kHz s16le
    assert seconds == pytest.approx(len(samples) / TTS_RATE, abs=0.01)
    faster = http.post("/v1/audio/speech", json={"input": "Hello there.", "speed": 2.0})
    assert len(soundfile.read(io.BytesIO(faster.content))[0]) == int(0.05 * len("Hellothere") / 2 * TTS_RATE)


@pytest.mark.parametrize(
    "body,status,words",
    [
        ({"input": "hi", "voice": "Nobody"}, 400, "unknown voice"),
        ({"input": "hi", "voice": "Nobody", "response_format": "pcm"}, 400, "unknown voice"),
        ({"input": "hi", "tags": ["大声"]}, 400, "unknown tags"),
        ({"input": "hi", "tags": ["大声"], "response_format": "pcm"}, 400, "unknown tags"),
        ({"input": "   "}, 400, "empty"),
        ({"input": "x" * 101}, 400, "over the limit of 100"),
        ({"input": "hi", "response_format": "mp3"}, 400, "response_format"),
        ({"input": "hi", "speed": 4.0}, 400, "speed must be between 0.5 and 2.0"),
        ({"voice": "Alice"}, 400, "input"),
    ],
)
def test_bad_speech_requests(body, status, words):
    assert_error(client(limits=Limits(max_text_chars=100)).post("/v1/audio/speech", json=body), status, words)


def test_transcription_of_real_speech(speech_path):
    from stepaudio.realtime.listen import WhisperListener

    http = client(fake_models(listener=WhisperListener.load()))
    with open(speech_path, "rb") as audio:
        response = http.post(
            "/v1/audio/transcriptions", files={"file": ("q.wav", audio, "audio/wav")}, data={"model": "whisper-1"}
        )
    assert response.status_code == 200, response.text
    assert "young man" in response.json()["text"]  # "He was not an ill disposed young man."


def test_transcription_formats_and_bad_uploads(tmp_path):
    http = client(limits=Limits(max_upload_bytes=200_000))
    wav = io.BytesIO()
    soundfile.write(wav, np.zeros(16000, np.float32), 16000, format="WAV")
    files = {"file": ("a.wav", wav.getvalue(), "audio/wav")}
    assert http.post("/v1/audio/transcriptions", files=files).json() == {"text": FAKE_TRANSCRIPT}
    text = http.post("/v1/audio/transcriptions", files=files, data={"response_format": "text"})
    assert text.text == FAKE_TRANSCRIPT
    assert_error(http.post("/v1/audio/transcriptions", files=files, data={"response_format": "srt"}), 400, "json")
    garbage = {"file": ("a.wav", b"RIFF garbage that is not audio", "audio/wav")}
    assert_error(http.post("/v1/audio/transcriptions", files=garbage), 400, "not readable audio")
    mp4 = {"file": ("a.m4a", b"\0\0\0\x20ftypM4A " + b"\0" * 64, "audio/mp4")}
    assert_error(http.post("/v1/audio/transcriptions", files=mp4), 400, "MP4/M4A")
    assert_error(http.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"", "audio/wav")}), 400, "empty")
    assert_error(http.post("/v1/audio/transcriptions", data={"model": "x"}), 400, "file")
    assert_error(http.post("/v1/audio/transcriptions", files=files, data={"language": "fr"}), 400, "English")
    big = {"file": ("big.wav", b"\0" * 300_000, "audio/wav")}
    assert_error(http.post("/v1/audio/transcriptions", files=big), 413, "limit of 200000 bytes")


def test_streamed_body_over_the_limit_is_refused_without_a_length():
    http = client(limits=Limits(max_upload_bytes=1000))

    def body():
        for _ in range(10):
            yield b"x" * 500

    response = http.post("/v1/audio/speech", content=body(), headers={"content-type": "application/json"})
    assert_error(response, 413, "limit of 1000 bytes")


def test_api_key_and_cors():
    http = client(api_key="s3cret")
    assert http.get("/health").status_code == 200  # health and the page stay public
    assert http.get("/").status_code == 200
    assert_error(http.get("/v1/models"), 401, "API key")
    assert_error(http.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401, "API key")
    assert http.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client().options("/v1/audio/speech", headers=preflight).headers
    allowed = client(cors_origins=("https://app.example",)).options("/v1/audio/speech", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"


def test_chat_requests_checked_before_the_model_runs():
    http = client()
    bad = [
        ({"messages": []}, "messages is empty"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message must be the user's"),
        ({"messages": [{"role": "tool", "content": "hi"}]}, "role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "text content"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "stream": True, "modalities": ["text", "audio"]},
            "realtime",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, "temperature"),
    ]
    for body, words in bad:
        assert_error(http.post("/v1/chat/completions", json=body), 400, words)


@pytest.mark.slow
def test_chat_completion_text_stream_and_audio(mini_chat):
    http = client(fake_models(chat=mini_chat))
    question = {
        "messages": [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "What is the capital of France?"},
        ]
    }
    answer = http.post("/v1/chat/completions", json={**question, "temperature": 0, "max_tokens": 8}).json()
    text = answer["choices"][0]["message"]["content"]
    assert "Paris" in text and answer["object"] == "chat.completion"
    with http.stream(
        "POST", "/v1/chat/completions", json={**question, "temperature": 0, "max_tokens": 8, "stream": True}
    ) as sse:
        lines = [line for line in sse.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    streamed = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content", "") for line in lines[:-1])
    assert streamed == text
    spoken = http.post(
        "/v1/chat/completions",
        json={
            **question,
            "temperature": 0,
            "max_tokens": 8,
            "modalities": ["text", "audio"],
            "audio": {"voice": "Alice", "format": "wav"},
        },
    ).json()["choices"][0]["message"]
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(spoken["audio"]["data"])))
    assert rate == TTS_RATE and len(samples) > 0 and spoken["audio"]["transcript"] == spoken["content"]


def test_speech_and_spoken_chat_name_the_engine_that_spoke(monkeypatch):
    """X-Speech-Engine: the speaker's `engine` (piper, step-audio-tts or mini-tts; the fake's own here)."""
    from types import SimpleNamespace

    from stepaudio.serve import routes

    class Answer:
        def reply(self, question, cancel):
            yield "Paris."

    monkeypatch.setattr(routes, "_conversation_for", lambda *args: Answer())
    http = client(fake_models(chat=SimpleNamespace(answer_tokens=8)))
    for response_format in ("wav", "pcm"):
        speech = http.post("/v1/audio/speech", json={"input": "Hello there.", "response_format": response_format})
        assert speech.status_code == 200 and speech.headers["x-speech-engine"] == "fake-tts"
    question = {"messages": [{"role": "user", "content": "The capital of France?"}]}
    spoken = http.post("/v1/chat/completions", json={**question, "modalities": ["text", "audio"]})
    assert spoken.status_code == 200 and spoken.headers["x-speech-engine"] == "fake-tts"
    assert spoken.json()["choices"][0]["message"]["audio"]["transcript"] == "Paris."
    assert "x-speech-engine" not in http.post("/v1/chat/completions", json=question).headers  # nothing spoken
