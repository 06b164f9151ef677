"""The `openai` Python package, pointed at a local server, gets speech and transcripts."""

import io

import pytest
import soundfile
from fakes import TTS_RATE, fake_models
from live import LiveServer

from stepaudio.serve.app import create_app
from stepaudio.serve.settings import ServeSettings

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server():
    from stepaudio.realtime.listen import WhisperListener

    app = create_app(fake_models(listener=WhisperListener.load()), ServeSettings(model="fake", api_key="local-key"))
    with LiveServer(app) as live:
        yield live


def client(server, api_key="local-key"):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0)


def test_speech_and_transcription(server, speech_path):
    speech = client(server).audio.speech.create(
        model="tts-1", voice="Alice", input="Hello there.", response_format="wav"
    )
    samples, rate = soundfile.read(io.BytesIO(speech.content))
    assert rate == TTS_RATE and len(samples) == int(0.05 * len("Hellothere") * TTS_RATE)
    with open(speech_path, "rb") as audio:
        transcript = client(server).audio.transcriptions.create(model="whisper-1", file=audio)
    assert "young man" in transcript.text
    assert [m.id for m in client(server).models.list()] == ["fake"]


def test_errors_reach_the_client_as_openai_errors(server):
    with pytest.raises(openai.BadRequestError, match="unknown voice"):
        client(server).audio.speech.create(model="tts-1", voice="Nobody", input="Hi.")
    with pytest.raises(openai.AuthenticationError, match="API key"):
        client(server, api_key="wrong").models.list()
