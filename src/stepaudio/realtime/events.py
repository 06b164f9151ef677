"""The events a real-time session sends: typed, frozen, one class per OpenAI Realtime server event.

Each class names the OpenAI event it maps to in `type`, so a server turns them into JSON without a
lookup table (`to_dict`); audio travels as float32 mono samples with their rate, and the server
chooses the wire encoding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np


class Event:
    """Base of every session event; `type` is the OpenAI Realtime server event name."""

    type: ClassVar[str]

    def to_dict(self) -> dict:
        """The fields as plain data (no audio samples: the server encodes those as it likes)."""
        data = {"type": self.type}
        for field in fields(self):
            value = getattr(self, field.name)
            data[field.name] = f"<{len(value)} samples>" if isinstance(value, np.ndarray) else value
        return data


@dataclass(frozen=True)
class SpeechStarted(Event):
    type: ClassVar[str] = "input_audio_buffer.speech_started"
    audio_start_ms: int  # where the user's speech began, in the session's input audio


@dataclass(frozen=True)
class SpeechStopped(Event):
    type: ClassVar[str] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int  # where the user's turn was declared over (end-of-turn silence included)


@dataclass(frozen=True)
class TranscriptDelta(Event):
    type: ClassVar[str] = "conversation.item.input_audio_transcription.delta"
    item_id: str
    delta: str


@dataclass(frozen=True)
class TranscriptDone(Event):
    type: ClassVar[str] = "conversation.item.input_audio_transcription.completed"
    item_id: str
    transcript: str


@dataclass(frozen=True)
class ResponseCreated(Event):
    type: ClassVar[str] = "response.created"
    response_id: str


@dataclass(frozen=True)
class TextDelta(Event):
    type: ClassVar[str] = "response.output_text.delta"
    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True, eq=False)  # arrays do not compare with ==
class AudioDelta(Event):
    type: ClassVar[str] = "response.output_audio.delta"
    response_id: str
    item_id: str
    pcm: np.ndarray  # float32 mono [n]
    sample_rate: int


@dataclass(frozen=True)
class ResponseDone(Event):
    type: ClassVar[str] = "response.done"
    response_id: str
    status: str  # completed | cancelled | failed
    text: str  # what the assistant said (cut to what was played when it was interrupted)


@dataclass(frozen=True)
class Error(Event):
    type: ClassVar[str] = "error"
    message: str
    code: str  # e.g. "listen_failed", "respond_failed", "speak_failed", "invalid_request"
