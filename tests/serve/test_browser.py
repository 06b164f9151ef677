"""The web page in a real browser: Debian's chromium driven by Playwright, its fake microphone fed
from a wav file. The page connects, the question shows on screen, the answer is played.

Skips where chromium or playwright are missing (`make system-packages` and the dev extra install
them, so CI runs it). Playwright never downloads a browser here: it drives the system chromium."""

import time

import pytest
from browser import CHROMIUM, fake_microphone, open_page
from fakes import FAKE_ANSWER, FAKE_TRANSCRIPT, fake_models
from live import LiveServer

from stepaudio.audio import load_audio
from stepaudio.serve.app import create_app
from stepaudio.serve.settings import ServeSettings

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install chromium")


def test_page_talks_with_the_server(tmp_path, speech_path):
    speech, rate = load_audio(speech_path, 48000)
    microphone = fake_microphone(tmp_path / "mic.wav", speech, rate)
    sessions = []
    app = create_app(fake_models(answer_seconds=1.0, sessions=sessions), ServeSettings(model="fake"))
    with LiveServer(app) as server, sync_api.sync_playwright() as playwright:
        browser, page = open_page(playwright, server.url, microphone)
        try:
            page.wait_for_selector("#voice option[value=Alice]", state="attached")
            page.select_option("#voice", "Alice")
            page.click("#connect")
            sync_api.expect(page.locator(".turn.user .text").first).to_have_text(FAKE_TRANSCRIPT, timeout=20_000)
            sync_api.expect(page.locator(".turn.assistant .text").first).to_contain_text(FAKE_ANSWER, timeout=10_000)
            page.wait_for_function(
                "window.stepaudio.playedSamples >= 0.9 * window.stepaudio.ctx.sampleRate", timeout=10_000
            )
            assert page.locator("#latency").inner_text().endswith(" ms")
            assert "first audio after" in page.locator(".turn.assistant .note").first.inner_text()
            assert sessions[0].config.voice == "Alice"  # the picker reached the session
        finally:
            browser.close()


def test_tag_pickers_reach_the_session(tmp_path, speech_path):
    sessions = []
    models = fake_models(sessions=sessions)
    speech, rate = load_audio(speech_path, 48000)
    with (
        LiveServer(create_app(models, ServeSettings(model="fake"))) as server,
        sync_api.sync_playwright() as playwright,
    ):
        browser, page = open_page(playwright, server.url, fake_microphone(tmp_path / "mic.wav", speech, rate))
        try:
            page.wait_for_selector("select[data-group=speed]", state="attached")
            page.select_option("select[data-group=speed]", "快速1")
            page.click("#connect")
            page.wait_for_function("document.getElementById('status').dataset.state === 'listening'")
            deadline = time.monotonic() + 10
            while not (sessions and sessions[0].config.tags) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sessions[0].config.tags == ("快速1",)
        finally:
            browser.close()


def test_speaking_over_the_answer_interrupts_it(tmp_path, speech_path):
    """The looping microphone asks again while the answer plays: playback stops, the server hears
    how much of the answer was played (conversation.item.truncate), the answer shows as cut."""
    speech, rate = load_audio(speech_path, 48000)
    microphone = fake_microphone(tmp_path / "mic.wav", speech, rate, silence_seconds=1.5)
    sessions = []
    app = create_app(fake_models(answer_seconds=30, sessions=sessions), ServeSettings(model="fake"))
    with LiveServer(app) as server, sync_api.sync_playwright() as playwright:
        browser, page = open_page(playwright, server.url, microphone)
        try:
            page.click("#connect")
            sync_api.expect(page.locator(".turn.assistant.cancelled").first).to_be_attached(timeout=30_000)
            deadline = time.monotonic() + 10
            while not (sessions and sessions[0].truncated) and time.monotonic() < deadline:
                time.sleep(0.1)
            item_id, played_ms = sessions[0].truncated[0]
            assert item_id.startswith("item_") and 0 < played_ms < 30_000
        finally:
            browser.close()
