"""Speaker embeddings that condition the flow on a voice.

- Official: CAMPPlus (3D-Speaker) as `campplus.onnx`, run with onnxruntime; input is 80-bin Kaldi
  fbank (povey window, no dither) of the 16 kHz prompt in [-1, 1], minus its per-utterance mean, as
  the official front end computes it; output 192-d.
- mini: Resemblyzer's GE2E speaker encoder (3-layer LSTM over 40-bin power mel, 256-d), whose
  pretrained weights ship inside the `resemblyzer` wheel. It is the only pretrained speaker model that
  installs here without downloads; we run our own few lines of torch on its weights (weights_only),
  so neither its librosa/webrtcvad dependencies nor its pickled checkpoint code run.
Both take 16 kHz mono float samples and return a float32 vector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from stepaudio.audio.fbank import kaldi_fbank
from stepaudio.audio.mel import mel_filters
from stepaudio.errors import AudioError, CheckpointError, ModelNotFound
from stepaudio.rates import SAMPLE_RATE


def _check(samples: np.ndarray, minimum: int) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"speaker embedding needs mono samples [n], got shape {samples.shape}")
    if len(samples) < minimum or not np.isfinite(samples).all():
        raise AudioError(f"speaker embedding needs at least {minimum / SAMPLE_RATE:.3f} s of finite 16 kHz audio")
    return samples


class CAMPPlus:
    """The official 192-d speaker embedding (ONNX)."""

    dim = 192

    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime

        if not Path(path).is_file():
            raise ModelNotFound(f"{path} not found: campplus.onnx comes with the official CosyVoice folders")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise CheckpointError(f"cannot load {path} as an ONNX model: {error}") from error
        self.input_name = self.session.get_inputs()[0].name

    def features(self, samples: np.ndarray) -> np.ndarray:
        """16 kHz samples -> mean-normalised Kaldi fbank [frames, 80]."""
        feats = kaldi_fbank(_check(samples, 400), 80, window="povey")
        return feats - feats.mean(axis=0, keepdims=True)

    def __call__(self, samples: np.ndarray) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: self.features(samples)[None]})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32).reshape(-1))


class GE2E(nn.Module):
    """Resemblyzer's speaker encoder: utterance -> L2-normalised mean of 1.6 s partial embeddings."""

    dim = 256
    n_mels, n_fft, hop = 40, 400, 160  # 25 ms windows every 10 ms
    partial_frames = 160  # 1.6 s
    partials_per_second = 1.3
    min_coverage = 0.75
    target_dbfs = -30.0

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(self.n_mels, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, self.dim)

    @classmethod
    def from_resemblyzer(cls, path: Path) -> GE2E:
        """Load the `pretrained.pt` inside the resemblyzer wheel (its `model_state`, weights only)."""
        if not Path(path).is_file():
            raise ModelNotFound(f"{path} not found; run: stepaudio install mini")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint.get("model_state") if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} has no model_state: not a Resemblyzer checkpoint")
        # similarity_weight/bias only served the GE2E training loss
        state = {k: v for k, v in state.items() if not k.startswith("similarity_")}
        model = cls()
        model.load_state_dict(state, strict=True)
        return model.eval()

    def mel(self, samples: np.ndarray) -> torch.Tensor:
        """Power mel [frames, 40]: centred STFT with zero padding, Slaney filters (as librosa's default)."""
        x = torch.from_numpy(samples)
        spec = torch.stft(
            x,
            self.n_fft,
            self.hop,
            window=torch.hann_window(self.n_fft),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        return (mel_filters(SAMPLE_RATE, self.n_fft, self.n_mels) @ spec.abs().pow(2)).T

    def partial_starts(self, n_samples: int) -> list[int]:
        """First frames of the 1.6 s partials that cover the utterance (the last one at least 75%)."""
        frames = int(np.ceil((n_samples + 1) / self.hop))
        step = int(np.round(SAMPLE_RATE / self.partials_per_second / self.hop))
        starts = list(range(0, max(1, frames - self.partial_frames + step + 1), step))
        coverage = (n_samples - starts[-1] * self.hop) / (self.partial_frames * self.hop)
        if coverage < self.min_coverage and len(starts) > 1:
            starts.pop()
        return starts

    @torch.inference_mode()
    def __call__(self, samples: np.ndarray) -> torch.Tensor:
        samples = _check(samples, self.n_fft)
        rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
        if 0 < rms < 10 ** (self.target_dbfs / 20):  # raise quiet input to -30 dBFS, never lower
            samples = samples * (10 ** (self.target_dbfs / 20) / rms)
        starts = self.partial_starts(len(samples))
        end = (starts[-1] + self.partial_frames) * self.hop
        samples = np.pad(samples, (0, max(0, end - len(samples))))
        mel = self.mel(samples.astype(np.float32))
        mels = torch.stack([mel[s : s + self.partial_frames] for s in starts])  # [partials, 160, 40]
        _, (hidden, _) = self.lstm(mels)
        partial = torch.relu(self.linear(hidden[-1]))
        partial = partial / partial.norm(dim=1, keepdim=True)
        mean = partial.mean(dim=0)
        return mean / mean.norm()
