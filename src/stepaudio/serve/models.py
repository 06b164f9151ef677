"""The models one server process runs: the voice-chat engine, loaded once, shared by every request
and session. The HTTP routes use the engine's own parts (its speaker for speech, its listener for
transcripts, its chat LM for completions), so nothing is loaded twice.

HTTP work reaches each part through one worker thread (`ModelWorker`): requests queue instead of
piling threads onto two cores, and the event loop stays free for the real-time sessions' audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stepaudio.lm.prompts import EMOTION_TAGS, LANGUAGE_TAGS, MUSIC_TAGS, SPEED_TAGS
from stepaudio.realtime.worker import LISTEN_THREADS
from stepaudio.serve.realtime import RealtimeBackend
from stepaudio.serve.workers import ModelWorker

STYLE_TAGS = {"emotion": EMOTION_TAGS, "language": LANGUAGE_TAGS, "speed": SPEED_TAGS, "music": MUSIC_TAGS}


@dataclass
class Models:
    name: str  # what --model said: shown by /v1/models and in sessions
    speaker: Any  # the engine's TTS: sample_rate, default_voice, voices, stream(text, voice, tags, cancel)
    listener: Any  # the engine's listener: stream() -> step(16 kHz samples), hear() -> Heard
    chat: Any  # the engine's chat LM (stepaudio.lm.loaders.LanguageModel)
    realtime: RealtimeBackend
    speaker_worker: ModelWorker = field(default_factory=lambda: ModelWorker("speech"))
    listener_worker: ModelWorker = field(default_factory=lambda: ModelWorker("transcribe", LISTEN_THREADS))
    chat_worker: ModelWorker = field(default_factory=lambda: ModelWorker("chat"))

    @classmethod
    def from_engine(cls, name: str, engine, session_defaults=None, max_turn_seconds: float | None = None) -> Models:
        """engine: a loaded `ChatEngine`; session_defaults: the `SessionConfig` every connection starts
        with (a client changes it with session.update); max_turn_seconds: see `RealtimeSession`."""
        from stepaudio.realtime.session import RealtimeSession, SessionConfig

        defaults = session_defaults or SessionConfig()
        realtime = RealtimeBackend(
            lambda: defaults,
            lambda config: RealtimeSession(engine, config, max_turn_seconds=max_turn_seconds),
            lambda: voice_names(engine.speaker),
        )
        return cls(name, engine.speaker, engine.listener, engine.responder.lm, realtime)

    def voice_names(self) -> list[str]:
        return voice_names(self.speaker)

    def close(self) -> None:
        for worker in (self.speaker_worker, self.listener_worker, self.chat_worker):
            worker.close()
        if hasattr(self.speaker, "close"):  # PiperSpeaker's worker process
            self.speaker.close()


def voice_names(speaker) -> list[str]:
    voices = speaker.voices  # the TTS's VoiceRegistry, or Piper's {name: voice}
    return voices.names() if hasattr(voices, "names") else sorted(voices)
