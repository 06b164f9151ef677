"""A Piper voice behind the TTS interface a conversation needs: a fast, intelligible stand-in speaker
for the mini voice chat while the mini TTS trains (Piper is in the `train` extra)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

from stepaudio.decoder.speech_decoder import check_speed
from stepaudio.errors import OptionError
from stepaudio.tts.prompt import check_tags, tagged_rate

_SENTENCES = re.compile(r"(?<=[.!?])\s+")


class PiperSpeaker:
    def __init__(self, voice: str | None = None):
        from stepaudio.train.data.engines import get_engine

        self.engine = get_engine("piper")
        self.voices = {v.name: v for v in self.engine.voices()}  # EngineUnavailable says how to install
        self.default_voice = self._voice(voice).name
        # One short rendering loads the voice (the first answer should not pay for it) and gives its rate.
        self.sample_rate = self.engine.render(self.voices[self.default_voice], "Hello.", 1.0, seed=0)[1]

    def stream(
        self, text: str, voice: str | None = None, tags=(), cancel=None, speed: float = 1.0
    ) -> Iterator[np.ndarray]:
        """One chunk per sentence (Piper renders a sentence at once); `voice`: a Piper voice name; `speed`:
        Piper's own rate control (its phoneme durations), in the TTS pipeline's range, times the rates of
        the speed tags (the other tags have no Piper rendering)."""
        if not text.strip():
            raise OptionError("nothing to say: empty text")
        speed = tagged_rate(check_speed(speed), check_tags(tags))
        chosen = self._voice(voice)
        for sentence in _SENTENCES.split(text.strip()):
            if cancel is not None and cancel.is_set():
                return
            yield self.engine.render(chosen, sentence, speed, seed=0)[0].astype(np.float32)

    def _voice(self, name: str | None):
        if name is None:
            return next(iter(self.voices.values()))
        if name not in self.voices:
            raise OptionError(f"unknown Piper voice {name!r}; installed: {', '.join(self.voices)}")
        return self.voices[name]
