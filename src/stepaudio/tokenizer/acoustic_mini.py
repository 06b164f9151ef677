"""The mini acoustic tokenizer: 25 Hz, 4096 codes, nearest centroid over 40 ms of log-mel spectrum.

Why this quantiser: the mini semantic stream comes from an ASR encoder (Whisper), trained to keep
*what* was said and to drop *who* said it and *how*. The speech decoder needs the rest. A 40 ms slice
of the un-normalised mel spectrum carries it: the spectral envelope (timbre), the harmonics in the low
bins (pitch and voicing) and the level (loudness), at exactly the acoustic stream's 25 Hz. A k-means
codebook over such slices is trained in minutes on a CPU, has no encoder to run (tokenizing costs
one mel), and streams exactly: every token depends on its own 40 ms only. Features are standardised
per dimension with statistics of the training corpus, never per utterance, so speaker and loudness
differences survive into the codes.

A codebook made with `utterance_mean` (`stepaudio train kmeans acoustic --utterance-mean`) first takes
each utterance's mean log-mel away (cepstral mean normalisation). Its codes spend themselves on what is
said; the speaker's and the channel's average spectrum is left to the decoder's voice prompt and
speaker embedding. A stream can only take away the mean of the frames so far, and 4096 fine codes
feel the difference: streamed codes then differ from offline ones (docs/experiments.md measures how often).

The learned alternative, whose codes the voices share, is `acoustic_fsq`; `load_acoustic_mini` loads either.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from stepaudio.audio.whisper_mel import LogMelStream, log10_mel
from stepaudio.errors import CheckpointError, ModelNotFound
from stepaudio.tokenizer.codebook import nearest
from stepaudio.tokenizer.input import SAMPLE_RATE, as_16k_mono


@dataclass(frozen=True)
class AcousticMiniConfig:
    n_mels: int = 80
    frames_per_token: int = 4  # 10 ms mel frames per 40 ms token: 25 Hz
    codebook_size: int = 4096
    utterance_mean: bool = False  # take each utterance's mean log-mel away first (False: the packaged codebook)

    @property
    def dim(self) -> int:
        return self.n_mels * self.frames_per_token


def raw_slices(mel: torch.Tensor, config: AcousticMiniConfig, utterance_mean: torch.Tensor | None = None):
    """log10 mel [n_mels, frames] -> 40 ms slices before standardising; an `utterance_mean` codebook's take
    the utterance's mean away (utterance_mean [n_mels, 1]; default: this mel's own mean)."""
    if config.utterance_mean:
        mel = mel - (mel.mean(dim=1, keepdim=True) if utterance_mean is None else utterance_mean)
    return stack_frames(mel, config.frames_per_token)


def write_config_beside(path: Path, config) -> None:
    """A tokenizer's dataclass config as JSON beside its weights (same name, .json)."""
    path.with_suffix(".json").write_text(json.dumps(asdict(config), indent=2) + "\n")


def read_config_beside(path: Path, what: str) -> dict:
    """The JSON config beside a tokenizer's weights; either file missing is ModelNotFound."""
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise ModelNotFound(f"{what} not found: {path} and its .json config")
    return json.loads(path.with_suffix(".json").read_text())


def stack_frames(mel: torch.Tensor, frames_per_token: int) -> torch.Tensor:
    """log10 mel [n_mels, frames] -> consecutive frames stacked per token [frames // k, n_mels * k]."""
    count = mel.shape[1] // frames_per_token
    return mel[:, : count * frames_per_token].T.reshape(count, frames_per_token * mel.shape[0])


class AcousticMiniTokenizer:
    """Acoustic codes at 25 Hz (n // 640 for n samples at 16 kHz), offline or streaming."""

    def __init__(self, config: AcousticMiniConfig, centroids: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
        if centroids.shape != (config.codebook_size, config.dim) or not mean.shape == std.shape == (config.dim,):
            raise CheckpointError(
                f"acoustic codebook shapes {tuple(centroids.shape)}, {tuple(mean.shape)}, {tuple(std.shape)} "
                f"do not match the config ({config.codebook_size} x {config.dim})"
            )
        self.config, self.centroids, self.mean, self.std = config, centroids, mean, std

    def slices(self, mel: torch.Tensor, utterance_mean: torch.Tensor | None = None) -> torch.Tensor:
        """log10 mel [n_mels, frames] -> standardised 40 ms slices [frames // 4, n_mels * 4].
        utterance_mean: as in `raw_slices`."""
        return (raw_slices(mel, self.config, utterance_mean) - self.mean) / self.std

    def quantize(self, mel: torch.Tensor, utterance_mean: torch.Tensor | None = None) -> np.ndarray:
        """log10 mel [n_mels, frames] -> codes [frames // 4] of the nearest centroid."""
        return nearest(self.slices(mel, utterance_mean), self.centroids)[0].numpy()

    def encode(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Acoustic codes [n // 640] in 0..codebook_size-1 at 25 Hz."""
        return self.quantize(log10_mel(as_16k_mono(samples, sample_rate), self.config.n_mels))

    def stream(self) -> AcousticMiniStream:
        return AcousticMiniStream(self)

    def save(self, path: str | Path) -> None:
        """Weights as safetensors at `path`, the config as JSON beside it (same name, .json)."""
        path = Path(path)
        save_file({"centroids": self.centroids, "mean": self.mean, "std": self.std}, path)
        write_config_beside(path, self.config)

    @classmethod
    def load(cls, path: str | Path) -> AcousticMiniTokenizer:
        path = Path(path)
        config = AcousticMiniConfig(**read_config_beside(path, "acoustic codebook"))
        tensors = load_file(path)
        return cls(config, tensors["centroids"], tensors["mean"], tensors["std"])


class AcousticMiniStream:
    """Per-session state: log-mel frames that do not yet fill a 40 ms token, and the sum of all frames
    so far (their mean stands in for the utterance's with an `utterance_mean` codebook)."""

    def __init__(self, tokenizer: AcousticMiniTokenizer):
        self.tokenizer = tokenizer
        self._mel = LogMelStream(tokenizer.config.n_mels)
        self._reset()

    def _reset(self) -> None:
        self._pending = torch.zeros(self.tokenizer.config.n_mels, 0)
        self._sum, self._frames = torch.zeros(self.tokenizer.config.n_mels, 1), 0

    def step(self, samples: np.ndarray) -> np.ndarray:
        """16 kHz mono samples in, every code whose 40 ms are complete out."""
        return self._codes(self._mel.step(samples))

    def flush(self) -> np.ndarray:
        """The last tokens; frames short of a whole token are dropped, as offline."""
        codes = self._codes(self._mel.flush())
        self._reset()
        return codes

    def _codes(self, frames: torch.Tensor) -> np.ndarray:
        self._sum += frames.sum(dim=1, keepdim=True)
        self._frames += frames.shape[1]
        mel = torch.cat([self._pending, frames], dim=1)
        whole = mel.shape[1] // self.tokenizer.config.frames_per_token * self.tokenizer.config.frames_per_token
        self._pending = mel[:, whole:]
        return self.tokenizer.quantize(mel[:, :whole], self._sum / max(self._frames, 1))
