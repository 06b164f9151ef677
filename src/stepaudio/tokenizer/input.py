"""Audio handed to a tokenizer: validated, mono, 16 kHz."""

import numpy as np

from stepaudio.audio import check_audio, resample, to_mono
from stepaudio.rates import SAMPLE_RATE


def as_16k_mono(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """float32 [n] at 16 kHz from any valid waveform; bad input raises the front end's AudioError."""
    return resample(to_mono(check_audio(samples, sample_rate)), sample_rate, SAMPLE_RATE)
