"""The real mini voice chat behind the server: a spoken LibriVox question over the WebSocket, then
the same through the web page in chromium. Slow: the engine loads once for both (the mini chat
LM, Whisper, Silero; the mini TTS, or Piper while the mini TTS is not installed)."""

import argparse

import numpy as np
import pytest
from browser import CHROMIUM, page_converses
from live import LiveServer, RealtimeClient, audio_seconds

from stepaudio.audio import load_audio
from stepaudio.errors import ModelNotFound
from stepaudio.serve.app import create_app
from stepaudio.serve.models import Models
from stepaudio.serve.settings import ServeSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    from stepaudio.commands.voice_chat_options import add_engine_args, load_engine

    parser = argparse.ArgumentParser()
    add_engine_args(parser)  # the defaults of `stepaudio serve`
    try:
        engine = load_engine(parser.parse_args([]), say=lambda line: None)
    except (ModelNotFound, ImportError) as missing:
        pytest.skip(f"the mini voice chat is not installed: {missing}")
    models = Models.from_engine("mini", engine)
    with LiveServer(create_app(models, ServeSettings(model="mini"))) as live:
        yield live


def test_spoken_question_gets_a_spoken_answer(server, speech_path):
    question, _ = load_audio(speech_path, 24000)
    with RealtimeClient(server.url) as client:
        client.recv()
        client.append(np.concatenate([question, np.zeros(24000, np.float32)]))
        transcript = client.until("conversation.item.input_audio_transcription.completed", timeout=60)
        assert "young man" in transcript["transcript"]  # "He was not an ill disposed young man."
        done = client.until("response.done", timeout=120)
        assert done["response"]["status"] == "completed" and done["response"]["output"][0]["content"][0]["transcript"]
        assert audio_seconds(client.events, 24000) > 0.5


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install chromium")
def test_page_gives_a_spoken_conversation(server, speech_path, tmp_path):
    page_converses(server.url, *load_audio(speech_path, 48000), tmp_path, timeout_ms=60_000)
