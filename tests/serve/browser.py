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
