"""A Piper voice behind the TTS interface a conversation needs: a fast, intelligible stand-in speaker
for the mini voice chat while the mini TTS trains (Piper is in the `train` extra). Piper runs in a
child process (`PiperProcess`) on text cut where its espeak-ng cannot crash (`speech_pieces`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from stepaudio.errors import OptionError
from stepaudio.realtime.espeak_text import speech_pieces
from stepaudio.realtime.piper_process import MAX_RSS_BYTES, PiperProcess
from stepaudio.speed import check_speed
from stepaudio.tts.prompt import check_tags, tagged_rate


class PiperSpeaker:
    engine = "piper"  # which engine spoke: /v1/audio/speech's X-Speech-Engine, `stepaudio tts`'s note

    def __init__(self, voice: str | None = None, max_worker_rss: int = MAX_RSS_BYTES):
        from stepaudio.tts_engines import get_engine

        self.voices = {v.name: v for v in get_engine("piper").voices()}  # EngineUnavailable says how to install
        self.default_voice = self._voice(voice).name
        # The worker loads the voice with one short rendering (the first answer should not pay for it).
        self.worker = PiperProcess(self.default_voice, max_worker_rss)
        self.sample_rate = self.worker.sample_rate

    def stream(
        self, text: str, voice: str | None = None, tags=(), cancel=None, speed: float = 1.0
    ) -> Iterator[np.ndarray]:
        """One chunk per sentence, a long one in pieces (`speech_pieces`); `voice`: a Piper voice name
        (default: `default_voice`); `speed`: Piper's own rate control (its phoneme durations), in the TTS
        pipeline's range, times the rates of the speed tags (the other tags have no Piper rendering)."""
        if not text.strip():
            raise OptionError("nothing to say: empty text")
        speed = tagged_rate(check_speed(speed), check_tags(tags))
        chosen = self._voice(voice or self.default_voice)
        for piece in speech_pieces(text):
            if cancel is not None and cancel.is_set():
                return
            yield self.worker.render(chosen.name, piece, speed)

    def close(self) -> None:
        """Ends the worker process."""
        self.worker.close()

    def _voice(self, name: str | None):
        if name is None:
            return next(iter(self.voices.values()))
        if name not in self.voices:
            raise OptionError(f"unknown Piper voice {name!r}; installed: {', '.join(self.voices)}")
        return self.voices[name]
