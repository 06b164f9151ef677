"""The models one server process runs: the voice-chat engine, loaded once, shared by every request
and session. The HTTP routes use the engine's own parts (its speaker for speech, its listener for
transcripts, its chat LM for completions), so nothing is loaded twice.

HTTP work reaches each part through one worker thread (`ModelWorker`): requests queue instead of
piling threads onto two cores, and the event loop stays free for the real-time sessions' audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepaudio.lm.prompts import EMOTION_TAGS, LANGUAGE_TAGS, MUSIC_TAGS, SPEED_TAGS
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
    listener_worker: ModelWorker = field(default_factory=lambda: ModelWorker("transcribe"))
    chat_worker: ModelWorker = field(default_factory=lambda: ModelWorker("chat"))

    @classmethod
    def load(cls, model: str | Path = "mini", tts: str = "auto", log=print) -> Models:
        """Load the engine `stepaudio serve --model/--tts` asks for; a missing part fails here, at
        start, with the error that says what to install. tts: the model's own TTS, a Piper voice
        (the `train` extra) or auto: the model's when its weights are installed, else Piper."""
        from stepaudio.errors import ModelNotFound
        from stepaudio.realtime.engine import ChatEngine
        from stepaudio.realtime.piper_speaker import PiperSpeaker

        if tts == "piper":
            engine = ChatEngine.load(model, speaker=PiperSpeaker())
        else:
            try:
                engine = ChatEngine.load(model)
            except ModelNotFound as missing:
                if tts == "model":
                    raise
                log(f"the model's TTS is not available ({missing}); speaking with Piper")
                engine = ChatEngine.load(model, speaker=PiperSpeaker())
        from stepaudio.realtime.session import RealtimeSession, SessionConfig

        realtime = RealtimeBackend(
            SessionConfig, lambda config: RealtimeSession(engine, config), lambda: voice_names(engine.speaker)
        )
        return cls(str(model), engine.speaker, engine.listener, engine.responder.lm, realtime)

    def voice_names(self) -> list[str]:
        return voice_names(self.speaker)

    def close(self) -> None:
        for worker in (self.speaker_worker, self.listener_worker, self.chat_worker):
            worker.close()


def voice_names(speaker) -> list[str]:
    voices = speaker.voices  # the TTS's VoiceRegistry, or Piper's {name: voice}
    return voices.names() if hasattr(voices, "names") else sorted(voices)
