"""Small stand-ins for the voice-chat engine's parts: the speaker (`stepaudio.tts.TTS`), the listener
and the real-time session (`RealtimeSession`, sending the real typed events), so the server is
tested on its own: fast, deterministic, and with behaviour the tests can predict.

The fake session hears speech by loudness, answers every turn with a fixed text and a tone, and
streams both at about real time so a test can interrupt or cancel them midway."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np

from stepaudio.audio import check_audio, resample
from stepaudio.errors import OptionError
from stepaudio.realtime.events import (
    AudioDelta,
    Error,
    ResponseCreated,
    ResponseDone,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TranscriptDelta,
    TranscriptDone,
)
from stepaudio.realtime.listen import Heard
from stepaudio.realtime.session import SessionConfig
from stepaudio.speed import check_speed

TTS_RATE = 22_050
FAKE_TRANSCRIPT = "what is the capital of france"
FAKE_ANSWER = "The capital of France is Paris."


# --- TTS ---------------------------------------------------------------------------------------


class FakeVoices:
    def names(self) -> list[str]:
        return ["Tingting", "Alice"]


class FakeSpeaker:
    """0.05 s of a 440 Hz tone per letter or digit (over `speed`), as one chunk or more, empty for a text
    of mere punctuation (as Piper renders one); unknown voices and tags are OptionErrors."""

    engine = "fake-tts"
    sample_rate = TTS_RATE
    default_voice = "Tingting"
    tags = ("快速1", "英文")

    def __init__(self):
        self.voices = FakeVoices()

    def stream(self, text, voice=None, tags=(), cancel=None, speed=1.0):
        if not text.strip():
            raise OptionError("empty text")
        speed = check_speed(speed)  # as the real speakers do
        if voice is not None and voice not in self.voices.names():
            raise OptionError(f"unknown voice {voice!r}")
        if unknown := [tag for tag in tags if tag not in self.tags]:
            raise OptionError(f"unknown tags {unknown}")
        return self._tone(sum(c.isalnum() for c in text) / speed, cancel)

    def _tone(self, characters: float, cancel):
        total = int(0.05 * characters * self.sample_rate)
        t = np.arange(total) / self.sample_rate
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, max(total, 1), 4096):
            if cancel is not None and cancel.is_set():
                return
            yield wave[start : start + 4096]


# --- real-time session -------------------------------------------------------------------------


class FakeSession:
    """Loud audio is speech; `vad.end_ms` of quiet ends the turn and starts the answer: FAKE_ANSWER
    in words, then `answer_seconds` of tone in 0.1-s chunks at about twice real time."""

    RATE = 16_000
    LOUD = 0.02  # RMS above this is speech
    ids = itertools.count()

    def __init__(self, config: SessionConfig, answer_seconds: float = 1.0):
        self.config = config
        self.answer_seconds = answer_seconds
        self.queue: asyncio.Queue = asyncio.Queue()
        self.heard_ms = 0.0
        self.speech_start: float | None = None
        self.quiet_ms = 0.0
        self.response: asyncio.Task | None = None
        self.truncated: list[tuple[str, int]] = []
        self.responses_done = 0
        self.closed = False
        self.state = "listening"

    async def append_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        samples = resample(check_audio(samples, sample_rate), sample_rate, self.RATE)
        ms = 1000 * len(samples) / self.RATE
        loud = float(np.sqrt(np.mean(samples**2))) > self.LOUD
        if self.config.turn_detection:
            if loud and self.speech_start is None:
                self.speech_start = self.heard_ms
                await self._emit(SpeechStarted(int(self.heard_ms)))
                if self.response is not None and not self.response.done():  # barge-in
                    await self.cancel_response()
            elif self.speech_start is not None:
                self.quiet_ms = 0.0 if loud else self.quiet_ms + ms
                if self.quiet_ms >= self.config.vad.end_ms:
                    await self._emit(SpeechStopped(int(self.heard_ms + ms)))
                    self.speech_start = None
                    await self._end_of_turn()
        self.heard_ms += ms

    async def commit(self) -> None:
        await self._end_of_turn()

    async def clear(self) -> None:
        self.speech_start = None

    async def _end_of_turn(self) -> None:
        await self.cancel_response()  # the new turn wins
        item = f"item_{next(self.ids)}"
        for word in FAKE_TRANSCRIPT.split():
            await self._emit(TranscriptDelta(item, word + " "))
        await self._emit(TranscriptDone(item, FAKE_TRANSCRIPT))
        await self.create_response()

    async def create_response(self, text: str | None = None) -> None:
        if self.response is not None and not self.response.done():  # as the real session: one at a time
            await self._emit(Error("a response is already in progress", "conversation_already_has_active_response"))
            return
        self.response = asyncio.create_task(self._respond(f"resp_{next(self.ids)}", f"item_{next(self.ids)}"))

    async def _respond(self, response_id: str, item_id: str) -> None:
        spoken = []
        try:
            await self._emit(ResponseCreated(response_id))
            for word in FAKE_ANSWER.split():
                spoken.append(word)
                await self._emit(TextDelta(response_id, item_id, word + " "))
            chunk = int(0.1 * TTS_RATE)
            for _ in range(int(self.answer_seconds * 10)):
                t = np.arange(chunk) / TTS_RATE
                await self._emit(
                    AudioDelta(response_id, item_id, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), TTS_RATE)
                )
                await asyncio.sleep(0.05)
            await self._emit(ResponseDone(response_id, "completed", " ".join(spoken)))
        except asyncio.CancelledError:
            await self._emit(ResponseDone(response_id, "cancelled", " ".join(spoken)))
            raise
        finally:
            self.responses_done += 1

    async def cancel_response(self) -> None:
        if self.response is not None and not self.response.done():
            self.response.cancel()
            await asyncio.gather(self.response, return_exceptions=True)

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        self.truncated.append((item_id, audio_end_ms))

    def update(self, config: SessionConfig) -> None:
        self.config = config

    async def events(self):
        while (event := await self.queue.get()) is not None:
            yield event

    async def close(self) -> None:
        await self.cancel_response()
        self.closed = True
        await self.queue.put(None)

    async def _emit(self, event) -> None:
        await self.queue.put(event)


class FakeListener:
    """Knows one sentence: any audio of 0.1 s or more is heard as FAKE_TRANSCRIPT."""

    def stream(self):
        return FakeListenStream()


class FakeListenStream:
    def __init__(self):
        self.samples = 0

    def step(self, samples: np.ndarray) -> None:
        self.samples += len(samples)

    def hear(self) -> Heard:
        transcript = FAKE_TRANSCRIPT if self.samples >= 1600 else ""
        return Heard(transcript, np.zeros(0, np.int64), self.samples / 16000)


def fake_models(
    listener=None, chat=None, answer_seconds: float = 1.0, sessions: list | None = None, config=SessionConfig
):
    """Models for the app with the fakes above; `sessions` collects every session opened; `config`:
    the session config class."""
    from stepaudio.serve.models import Models
    from stepaudio.serve.realtime import RealtimeBackend

    def open_session(config):
        session = FakeSession(config, answer_seconds)
        if sessions is not None:
            sessions.append(session)
        return session

    realtime = RealtimeBackend(config, open_session, FakeVoices().names)
    return Models("fake", FakeSpeaker(), listener or FakeListener(), chat, realtime)


def serve(sessions=None, answer_seconds=1.0, **settings):
    """The app on fakes, under a live server (see `live.LiveServer`)."""
    from live import LiveServer

    from stepaudio.serve.app import create_app
    from stepaudio.serve.settings import ServeSettings

    models = fake_models(sessions=sessions, answer_seconds=answer_seconds)
    return LiveServer(create_app(models, ServeSettings(model="fake", **settings)))
