"""The benches' intelligibility judge: Whisper tiny.en run by faster-whisper, a model nobody here trained,
and Whisper's English text normaliser for its transcripts and the references alike.

It decodes greedily at temperature 0 only. faster-whisper's default retries audio it finds garbled at
higher temperatures by sampling, so the same resynthesised audio read differently between runs (3 of 5
LibriVox resyntheses in three calls) and WERs of the same weights differed by about ±0.04.
Built after any timing: a CTranslate2 model that has run keeps its OpenMP threads busy while it lives,
which doubles torch's times on 2 cores.
"""

from __future__ import annotations

import numpy as np

from stepaudio.models import resolve_model


class EnglishJudge:
    def __init__(self, threads: int = 2):
        from faster_whisper import WhisperModel
        from whisper.normalizers import EnglishTextNormalizer

        whisper = resolve_model("mini").require("whisper")
        self.model = WhisperModel(str(whisper), device="cpu", compute_type="int8", cpu_threads=threads)
        self.normalize = EnglishTextNormalizer()

    def __call__(self, samples16: np.ndarray) -> str:
        """The normalised transcript of 16 kHz mono audio."""
        segments = self.model.transcribe(samples16, beam_size=1, language="en", temperature=0.0)[0]
        return self.normalize(" ".join(segment.text for segment in segments))
