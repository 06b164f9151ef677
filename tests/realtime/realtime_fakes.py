"""Fakes for the controller tests: an energy VAD driving the real hysteresis machine, a listener,
a responder and a tone speaker, each instant (or as slow as asked) and able to fail on demand."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from stepaudio.audio.vad import SAMPLE_RATE, VADParams, VADStream
from stepaudio.realtime.engine import ChatEngine
from stepaudio.realtime.listen import Heard


class EnergyVAD:
    """Speech probability 1 for a loud frame, 0 for a quiet one, through the real `VADStream`."""

    class _Session:
        def run(self, _, inputs):
            loud = float(np.sqrt(np.mean(inputs["input"][0, -512:] ** 2)) > 0.05)
            return np.array([[loud]], dtype=np.float32), inputs["state"]

    session = _Session()

    def stream(self, params: VADParams | None = None) -> VADStream:
        return VADStream(self, params or VADParams())


class FakeListenStream:
    def __init__(self, listener: FakeListener):
        self.listener, self.samples = listener, 0

    def step(self, samples: np.ndarray) -> None:
        self.samples += len(samples)

    def hear(self) -> Heard:
        self.listener.hears += 1
        if self.listener.fail:
            raise RuntimeError("listener broke")
        seconds = self.samples / SAMPLE_RATE
        return Heard(self.listener.transcript, np.zeros(5 * int(seconds / 0.12), dtype=np.int64), seconds)


@dataclass
class FakeListener:
    transcript: str = "what is the weather like"
    fail: bool = False
    hears: int = 0

    def stream(self) -> FakeListenStream:
        return FakeListenStream(self)


@dataclass
class FakeResponder:
    """Answers `answer` word by word, `delay` seconds a word; remembers every prompt it saw."""

    answer: str = "It is sunny today. Take a hat with you."
    delay: float = 0.0
    fail: bool = False
    reads_audio: bool = False
    prompts: list = field(default_factory=list)
    capacity_tokens: int = 4096
    answer_tokens: int = 256

    def prompt_tokens(self, messages) -> int:
        return sum(len(m["content"].split()) + 2 for m in messages)

    def user_content(self, heard: Heard) -> str:
        return heard.transcript

    def session(self):
        return _FakeResponderSession(self)


class _FakeResponderSession:
    def __init__(self, responder: FakeResponder):
        self.responder = responder
        self.capacity = responder.capacity_tokens

    def reply(self, messages, cancel: threading.Event):
        self.responder.prompts.append(messages)
        if self.responder.fail:
            raise RuntimeError("the LM broke")
        for i, word in enumerate(self.responder.answer.split()):
            if cancel.is_set():
                return
            time.sleep(self.responder.delay)
            yield word if i == 0 else " " + word


@dataclass
class ToneSpeaker:
    """`seconds_per_word` of a 220 Hz tone per word, in 0.1 s chunks."""

    sample_rate: int = 16_000
    seconds_per_word: float = 0.1
    fail: bool = False
    spoken: list = field(default_factory=list)
    styles: list = field(default_factory=list)  # (voice, tags, speed) of each sentence

    def stream(self, text, voice=None, tags=(), cancel=None, speed=1.0):
        if self.fail:
            raise RuntimeError("the TTS broke")
        self.spoken.append(text)
        self.styles.append((voice, tags, speed))
        n = int(len(text.split()) * self.seconds_per_word * self.sample_rate)
        tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / self.sample_rate)).astype(np.float32)
        for start in range(0, n, self.sample_rate // 10):
            if cancel is not None and cancel.is_set():
                return
            yield tone[start : start + self.sample_rate // 10]


def fake_engine(**parts) -> ChatEngine:
    return ChatEngine(
        parts.get("vad", EnergyVAD()),
        parts.get("listener", FakeListener()),
        parts.get("responder", FakeResponder()),
        parts.get("speaker", ToneSpeaker()),
    )


def speech(seconds: float) -> np.ndarray:
    """Loud noise: speech to the energy VAD."""
    return (0.3 * np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
