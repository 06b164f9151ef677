"""A Piper voice behind the TTS interface a conversation needs: a fast, intelligible stand-in speaker
for the mini voice chat while the mini TTS trains (Piper is in the `train` extra)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from stepaudio.errors import OptionError


class PiperSpeaker:
    def __init__(self, voice: str | None = None):
        from stepaudio.train.data.engines import get_engine

        self.engine = get_engine("piper")
        self.voices = {v.name: v for v in self.engine.voices()}  # EngineUnavailable says how to install
        self.default_voice = voice or next(iter(self.voices))
        if self.default_voice not in self.voices:
            raise OptionError(f"unknown Piper voice {voice!r}; installed: {', '.join(self.voices)}")
        self.sample_rate = self.synthesize_rate()

    def synthesize_rate(self) -> int:
        return self.engine.render(self.voices[self.default_voice], "Hi.", 1.0, seed=0)[1]

    def stream(self, text: str, voice: str | None = None, tags=(), cancel=None) -> Iterator[np.ndarray]:
        """One chunk per sentence (Piper renders a sentence at once); `voice`: a Piper voice name."""
        import re

        if not text.strip():
            raise OptionError("nothing to say: empty text")
        chosen = self.voices.get(voice or self.default_voice)
        if chosen is None:
            raise OptionError(f"unknown Piper voice {voice!r}; installed: {', '.join(self.voices)}")
        for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
            if cancel is not None and cancel.is_set():
                return
            samples, _ = self.engine.render(chosen, sentence, 1.0, seed=0)
            yield samples.astype(np.float32)
