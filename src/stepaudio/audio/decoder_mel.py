"""The speech decoder's mel: what the flow model predicts and the vocoder turns back into sound.

22.05 kHz, n_fft = win = 1024, hop 256, 80 Slaney mel bins over 0..8000 Hz, magnitude (not power)
spectrum, natural log with a 1e-5 floor, (n_fft - hop) / 2 reflect padding and no centring: the
CosyVoice / HiFi-GAN convention, which gives exactly n // 256 frames.
"""

from __future__ import annotations

import numpy as np
import torch

from stepaudio.audio.mel import mel_filters

SAMPLE_RATE = 22_050
N_FFT = 1024
WIN_LENGTH = 1024
HOP_LENGTH = 256
N_MELS = 80
FMIN = 0.0
FMAX = 8000.0
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH  # about 86.13
LOG_FLOOR = 1e-5
_PAD = (N_FFT - HOP_LENGTH) // 2


def mel_spectrogram(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[n] or [batch, n] samples at 22.05 kHz -> float32 [80, n // 256] or [batch, 80, n // 256]."""
    samples = torch.as_tensor(samples, dtype=torch.float32)
    if samples.ndim not in (1, 2):
        raise ValueError(f"expected samples [n] or [batch, n], got shape {tuple(samples.shape)}")
    if samples.shape[-1] <= _PAD:
        raise ValueError(f"need more than {_PAD} samples for a decoder mel frame, got {samples.shape[-1]}")
    batched = samples if samples.ndim == 2 else samples[None]
    padded = torch.nn.functional.pad(batched[:, None], (_PAD, _PAD), mode="reflect")[:, 0]
    window = torch.hann_window(WIN_LENGTH, device=samples.device)
    spec = torch.stft(padded, N_FFT, HOP_LENGTH, WIN_LENGTH, window=window, center=False, return_complex=True)
    magnitude = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    filters = mel_filters(SAMPLE_RATE, N_FFT, N_MELS, FMIN, FMAX).to(samples.device)
    mel = torch.log(torch.clamp(filters @ magnitude, min=LOG_FLOOR))
    return mel if samples.ndim == 2 else mel[0]
