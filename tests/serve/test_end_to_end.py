"""The real mini voice chat behind the server: a spoken LibriVox question over the WebSocket, then
the same through the web page in chromium. Slow: the engine loads once for both (the mini chat
LM, Whisper, Silero; the mini TTS, or Piper while the mini TTS is not installed)."""

import argparse

import numpy as np
import pytest
from browser import CHROMIUM, fake_microphone, open_page
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
    from playwright.sync_api import expect, sync_playwright

    speech, rate = load_audio(speech_path, 48000)
    microphone = fake_microphone(tmp_path / "mic.wav", speech, rate, silence_seconds=25)
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, server.url, microphone)
        try:
            page.click("#connect")
            expect(page.locator(".turn.user .text").first).to_contain_text("young man", timeout=60_000)
            expect(page.locator(".turn.assistant .text").first).not_to_be_empty(timeout=60_000)
            page.wait_for_function(
                "window.stepaudio.playedSamples >= 0.5 * window.stepaudio.ctx.sampleRate", timeout=60_000
            )
            assert page.locator("#latency").inner_text().endswith(" ms")
        finally:
            browser.close()
