"""The release's resampler: torchaudio's `transforms.Resample` with its defaults (Hann-windowed sinc,
6 zero crossings, roll-off 0.99), written out in torch so it needs no torchaudio.

The official code makes a voice prompt's 22.05 kHz mel and 16 kHz CAMPPlus input with it
(`StepAudioTTS.preprocess_prompt_wav`, tts.py:205-210 at stepfun-ai/Step-Audio a52b94d8); the rest of the
project resamples with soxr (`stepaudio.audio.io.resample`), whose output differs near the new Nyquist.
The kernel is built as torchaudio builds it (positions in float64, taps kept in float32) and applied as
one strided convolution, so the samples equal torchaudio's (checked against the official goldens).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from stepaudio.audio.io import check_sample_rate

ZERO_CROSSINGS = 6  # torchaudio's lowpass_filter_width
ROLLOFF = 0.99


@lru_cache(maxsize=16)
def _kernel(orig: int, new: int) -> tuple[torch.Tensor, int]:
    """[new, 1, taps] float32 filters (one per output phase) and the padding width, for rates already
    divided by their gcd (torchaudio's `_get_sinc_resample_kernel`, sinc_interp_hann)."""
    base = min(orig, new) * ROLLOFF
    width = math.ceil(ZERO_CROSSINGS * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = torch.arange(0, -new, -1)[:, None, None] / new + idx
    t = (t * base).clamp_(-ZERO_CROSSINGS, ZERO_CROSSINGS)
    window = torch.cos(t * math.pi / ZERO_CROSSINGS / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t) * window * (base / orig)
    return kernel.to(torch.float32), width


def resample_sinc(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """float32 mono samples at `from_rate` -> `to_rate`, as torchaudio.transforms.Resample(from, to) does
    (up or down; the same rate is returned as it is)."""
    check_sample_rate(from_rate)
    check_sample_rate(to_rate)
    samples = np.asarray(samples, dtype=np.float32)
    if from_rate == to_rate:
        return samples
    gcd = math.gcd(from_rate, to_rate)
    orig, new = from_rate // gcd, to_rate // gcd
    kernel, width = _kernel(orig, new)
    wave = torch.from_numpy(samples.copy()).reshape(1, 1, -1)
    padded = torch.nn.functional.pad(wave, (width, width + orig))
    with torch.inference_mode():
        out = torch.nn.functional.conv1d(padded, kernel, stride=orig)  # [1, new, frames]
    out = out.transpose(1, 2).reshape(-1)
    return out[: math.ceil(new * len(samples) / orig)].numpy().copy()
