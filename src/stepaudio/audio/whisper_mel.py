"""Whisper's log-mel front end (80 or 128 bins), as openai-whisper computes it, offline or streaming.

The acoustic tokenizer (S3, 128 bins) and the mini semantic tokenizer (Whisper tiny.en, 80 bins)
read these features. Whisper normalises each utterance by its own maximum (floor at max - 8, then
(x + 4) / 4); a stream cannot know that maximum in advance, so the streaming version yields the
plain log10 mel frames and `normalize_log_mel` applies Whisper's normalisation to any span of them.
"""

from __future__ import annotations

import numpy as np
import torch

from stepaudio.audio.mel import mel_filters
from stepaudio.rates import SAMPLE_RATE

N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30-second chunk
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second
_PAD = N_FFT // 2  # centred frames: reflect padding on both sides


def _filters(n_mels: int, device: torch.device) -> torch.Tensor:
    if n_mels not in (80, 128):
        raise ValueError(f"Whisper log-mel has 80 or 128 bins, not {n_mels}")
    return mel_filters(SAMPLE_RATE, N_FFT, n_mels).to(device)


def _log10_mel_of_padded(padded: torch.Tensor, n_mels: int) -> torch.Tensor:
    """log10 mel of every full 400-sample frame of already padded samples: [n_mels, frames]."""
    window = torch.hann_window(N_FFT, device=padded.device)
    stft = torch.stft(padded, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
    power = stft.abs() ** 2
    return torch.clamp(_filters(n_mels, padded.device) @ power, min=1e-10).log10()


def _as_tensor(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    samples = torch.as_tensor(samples, dtype=torch.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples [n], got shape {tuple(samples.shape)}")
    if samples.shape[0] <= _PAD:
        raise ValueError(f"need more than {_PAD} samples ({_PAD / SAMPLE_RATE * 1000:.1f} ms) for a log-mel frame")
    return samples


def log10_mel(samples: np.ndarray | torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """Un-normalised log10 mel of 16 kHz samples, [n_mels, n // 160] (Whisper drops the last frame)."""
    samples = _as_tensor(samples)
    padded = torch.nn.functional.pad(samples[None, None], (_PAD, _PAD), mode="reflect")[0, 0]
    return _log10_mel_of_padded(padded, n_mels)[:, : samples.shape[0] // HOP_LENGTH]


def normalize_log_mel(log_spec: torch.Tensor) -> torch.Tensor:
    """Whisper's dynamic-range floor (max - 8) and scaling to roughly [-1, 1]."""
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def log_mel_spectrogram(samples: np.ndarray | torch.Tensor, n_mels: int = 80, padding: int = 0) -> torch.Tensor:
    """Equal to `whisper.log_mel_spectrogram(samples, n_mels, padding)`: float32 [n_mels, frames]."""
    samples = _as_tensor(samples)
    if padding:
        samples = torch.nn.functional.pad(samples, (0, padding))
    return normalize_log_mel(log10_mel(samples, n_mels))


class LogMelStream:
    """Per-session streaming log10 mel: `step(samples)` yields complete frames, `flush()` the rest.

    Frame t is centred on sample 160*t and needs samples up to 160*t + 200, so each frame comes out
    as soon as they have arrived; the frames near the end need the end's reflect padding and come
    out at `flush()`. Together they equal `log10_mel` of the whole input.
    """

    def __init__(self, n_mels: int = 80):
        self.n_mels = n_mels
        self._reset()

    def _reset(self) -> None:
        self._head = torch.zeros(0)  # samples received before the first frame could be padded
        self._buffer = torch.zeros(0)  # padded samples from the start of the next frame
        self._received = 0
        self._emitted = 0

    def _empty(self) -> torch.Tensor:
        return torch.zeros(self.n_mels, 0)

    def step(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        samples = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        self._received += samples.shape[0]
        if self._emitted == 0 and self._buffer.numel() == 0:
            self._head = torch.cat([self._head, samples])
            if self._head.shape[0] <= _PAD:
                return self._empty()
            samples, self._head = torch.cat([self._head[1 : _PAD + 1].flip(0), self._head]), torch.zeros(0)
        self._buffer = torch.cat([self._buffer, samples])
        return self._take(self._buffer)

    def flush(self) -> torch.Tensor:
        """The last frames, then a reset for the next utterance. Needs > 200 samples in all."""
        if self._buffer.numel() == 0:
            self._reset()
            return self._empty()
        tail = self._buffer[-(_PAD + 1) : -1].flip(0)
        frames = self._take(torch.cat([self._buffer, tail]), total=self._received // HOP_LENGTH)
        self._reset()
        return frames

    def _take(self, padded: torch.Tensor, total: int | None = None) -> torch.Tensor:
        count = (padded.shape[0] - N_FFT) // HOP_LENGTH + 1 if padded.shape[0] >= N_FFT else 0
        if total is not None:
            count = min(count, total - self._emitted)
        if count <= 0:
            return self._empty()
        frames = _log10_mel_of_padded(padded[: (count - 1) * HOP_LENGTH + N_FFT], self.n_mels)
        self._buffer = padded[count * HOP_LENGTH :]
        self._emitted += count
        return frames
