"""One real-time conversation: audio in, events out (interface; the controller fills it in)."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from stepaudio.audio.vad import VADParams
from stepaudio.realtime.events import Event


class State(str, enum.Enum):
    LISTENING = "listening"  # waiting for, or hearing, the user
    PAUSED_SPECULATING = "paused_speculating"  # the user paused: an answer is being prepared, unseen
    RESPONDING = "responding"  # the answer is being written, no audio out yet
    SPEAKING = "speaking"  # answer audio is going out
    INTERRUPTED = "interrupted"  # the user spoke over the answer: output stopped, context cut


@dataclass(frozen=True)
class SessionConfig:
    voice: str | None = None  # a TTS voice name; None: the TTS default
    instructions: str | None = None  # the system prompt (pinned in the context)
    turn_detection: bool = True  # server VAD ends turns; False: the client calls commit()
    vad: VADParams = VADParams(pause_ms=200, end_ms=500)
    speculative: bool = True  # start answering at a pause, commit at end of turn
    speculate_after_ms: int = 200  # pause length that starts a speculative answer
    barge_in_ms: int = 250  # user speech this long during the answer interrupts it (coughs do not)


class RealtimeSession:
    def __init__(self, engine, config: SessionConfig | None = None): ...

    @property
    def state(self) -> State: ...

    async def append_audio(self, samples: np.ndarray, sample_rate: int) -> None: ...
    async def commit(self) -> None: ...
    async def clear(self) -> None: ...
    async def create_response(self, text: str | None = None) -> None: ...
    async def cancel_response(self) -> None: ...
    async def truncate(self, item_id: str, audio_end_ms: int) -> None: ...
    def update(self, config: SessionConfig) -> None: ...
    def events(self) -> AsyncIterator[Event]: ...
    async def close(self) -> None: ...
