"""Debian's chromium under Playwright, with a fake microphone playing a wav file (Playwright drives
the system browser and never downloads one)."""

import shutil

import numpy as np

from stepaudio.audio import save_audio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def fake_microphone(path, speech, rate: int, silence_seconds: float = 8) -> str:
    """The question once, then silence long enough for the answer (chromium loops the file)."""
    before, after = np.zeros(int(0.3 * rate), np.float32), np.zeros(int(silence_seconds * rate), np.float32)
    save_audio(path, np.concatenate([before, speech, after]), rate)
    return str(path)


def open_page(playwright, url: str, microphone: str):
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    page = browser.new_page()
    page.goto(url)
    return browser, page


def page_converses(url: str, question, rate: int, tmp_path, timeout_ms: int) -> None:
    """The page at `url` holds a spoken turn: the LibriVox question ("He was not an ill disposed young
    man.") from the fake microphone shows as the user's text, an answer is written and played."""
    from playwright.sync_api import expect, sync_playwright

    microphone = fake_microphone(tmp_path / "mic.wav", question, rate, silence_seconds=25)
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, url, microphone)
        try:
            page.click("#connect")
            expect(page.locator(".turn.user .text").first).to_contain_text("young man", timeout=timeout_ms)
            expect(page.locator(".turn.assistant .text").first).not_to_be_empty(timeout=timeout_ms)
            page.wait_for_function(
                "window.stepaudio.playedSamples >= 0.5 * window.stepaudio.ctx.sampleRate", timeout=timeout_ms
            )
            assert page.locator("#latency").inner_text().endswith(" ms")
        finally:
            browser.close()
