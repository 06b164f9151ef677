"""The learned mini acoustic tokenizer: 25 Hz, 4096 codes from a small convolutional encoder over 40 ms
log-mel slices, quantised by FSQ (finite scalar quantisation, Mentzer et al. 2023: four numbers, each
rounded to one of 8 levels, 8^4 = 4096 codes; no codebook to collapse, no commitment loss).

Why learned: the k-means codes of raw mel slices (`acoustic_mini`) are each voice's own (bench/token_voices.py)
and keep too little of what was said for the flow to say it again (bench/decoder.py). This encoder is trained
(`stepaudio train acoustic`) with a decoder that is told who speaks (a speaker embedding), so its codes need
not spend themselves on the voice; they keep what the voice does not give: the sounds said, and how.

Streaming is exact: each token sees the slices up to `context` tokens either side of it (the convolutions'
reach), so it is final once the `context` slices after it have arrived (160 ms for the mini encoder), and a
window of 2 x context slices around it gives the same code as the whole utterance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from stepaudio.audio.whisper_mel import LogMelStream, log10_mel
from stepaudio.errors import CheckpointError
from stepaudio.tokenizer.acoustic_mini import read_config_beside, stack_frames, write_config_beside
from stepaudio.tokenizer.input import SAMPLE_RATE, as_16k_mono


@dataclass(frozen=True)
class AcousticFSQConfig:
    quantizer: str = "fsq"  # tells this tokenizer's config from the k-means one's (`load_acoustic_mini`)
    n_mels: int = 80
    frames_per_token: int = 4  # 10 ms mel frames per 40 ms token: 25 Hz
    channels: int = 256
    blocks: int = 4
    kernel: int = 3
    levels: tuple[int, ...] = (8, 8, 8, 8)

    def __post_init__(self):
        if self.quantizer != "fsq" or self.kernel % 2 == 0 or any(n % 2 for n in self.levels):
            raise CheckpointError(f"not an FSQ acoustic tokenizer config (odd kernel, even levels): {self}")

    @property
    def dim(self) -> int:
        return self.n_mels * self.frames_per_token

    @property
    def codebook_size(self) -> int:
        return int(np.prod(self.levels))

    @property
    def context(self) -> int:
        """Tokens either side that a token's code depends on."""
        return self.blocks * (self.kernel // 2)


class FSQ(nn.Module):
    """[..., len(levels)] -> (values in [-1, 1) on each level's grid, with straight-through gradients;
    codes [...] in 0..prod(levels)-1). Even level counts only: tanh is shifted so that L levels are hit."""

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.float32), persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.tensor((1, *levels[:-1])), 0), persistent=False)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half_range = (self.levels - 1) * (1 - 1e-3) / 2
        bounded = torch.tanh(z + torch.atanh(0.5 / half_range)) * half_range - 0.5  # in (-L/2, L/2 - 1)
        rounded = bounded + (bounded.round() - bounded).detach()
        half = self.levels // 2
        codes = ((rounded.detach() + half) * self.basis).sum(-1).long()
        return rounded / half, codes

    def values(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [...] -> their values [..., len(levels)], as `forward` gives them."""
        half = self.levels // 2
        return ((codes[..., None] // self.basis) % self.levels - half) / half


class ConvBlock(nn.Module):
    """Pre-norm residual block over [B, T, C]: LayerNorm, a 'same' convolution in time, GELU, linear."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.mix = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(F.gelu(self.conv(self.norm(x).transpose(1, 2)).transpose(1, 2)))


class FSQEncoder(nn.Module):
    """Standardised slices [B, N, dim] -> (FSQ values [B, N, len(levels)], codes [B, N])."""

    def __init__(self, config: AcousticFSQConfig):
        super().__init__()
        self.input = nn.Linear(config.dim, config.channels)
        self.blocks = nn.Sequential(*[ConvBlock(config.channels, config.kernel) for _ in range(config.blocks)])
        self.output = nn.Linear(config.channels, len(config.levels))
        self.fsq = FSQ(config.levels)

    def forward(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fsq(self.output(self.blocks(self.input(slices))))


class AcousticFSQTokenizer:
    """Acoustic codes at 25 Hz (n // 640 for n samples at 16 kHz), offline or streaming."""

    def __init__(self, config: AcousticFSQConfig, encoder: FSQEncoder, mean: torch.Tensor, std: torch.Tensor):
        if not mean.shape == std.shape == (config.dim,):
            raise CheckpointError(f"slice statistics {tuple(mean.shape)} do not match {config.dim} dimensions")
        self.config, self.encoder, self.mean, self.std = config, encoder, mean, std

    def slices(self, mel: torch.Tensor) -> torch.Tensor:
        """log10 mel [n_mels, frames] -> standardised 40 ms slices [frames // 4, dim]."""
        return (stack_frames(mel, self.config.frames_per_token) - self.mean) / self.std

    @torch.inference_mode()
    def quantize(self, slices: torch.Tensor) -> np.ndarray:
        """Standardised slices [N, dim] -> codes [N]."""
        if len(slices) == 0:
            return np.zeros(0, dtype=np.int64)
        return self.encoder(slices[None].float())[1][0].numpy()

    def encode(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Acoustic codes [n // 640] in 0..4095 at 25 Hz."""
        return self.quantize(self.slices(log10_mel(as_16k_mono(samples, sample_rate), self.config.n_mels)))

    def stream(self) -> AcousticFSQStream:
        return AcousticFSQStream(self)

    def save(self, path: str | Path) -> None:
        """Weights and slice statistics as safetensors at `path`, the config as JSON beside it (.json)."""
        path = Path(path)
        tensors = {f"encoder.{k}": v.contiguous() for k, v in self.encoder.state_dict().items()}
        save_file(tensors | {"mean": self.mean, "std": self.std}, path)
        write_config_beside(path, self.config)

    @classmethod
    def load(cls, path: str | Path) -> AcousticFSQTokenizer:
        path = Path(path)
        raw = read_config_beside(path, "acoustic tokenizer")
        config = AcousticFSQConfig(**(raw | {"levels": tuple(raw.get("levels", AcousticFSQConfig.levels))}))
        tensors = load_file(path)
        encoder = FSQEncoder(config)
        weights = {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}
        missing, unexpected = encoder.load_state_dict(weights, strict=False)
        missing += [name for name in ("mean", "std") if name not in tensors]
        if missing or unexpected:
            raise CheckpointError(f"{path} does not fit its config: missing {missing}, unexpected {unexpected}")
        return cls(config, encoder.eval(), tensors["mean"], tensors["std"])


class AcousticFSQStream:
    """Per-session state: mel frames short of a slice, and the slices around the first code not yet given
    (the `context` before it, which it needs, and every later one)."""

    def __init__(self, tokenizer: AcousticFSQTokenizer):
        self.tokenizer = tokenizer
        self._mel = LogMelStream(tokenizer.config.n_mels)
        self._reset()

    def _reset(self) -> None:
        config = self.tokenizer.config
        self._pending = torch.zeros(config.n_mels, 0)
        self._slices = torch.zeros(0, config.dim)
        self._given = 0  # of self._slices, how many lead codes are already given (at most `context`)

    def step(self, samples: np.ndarray) -> np.ndarray:
        """16 kHz mono samples in, every code whose right context is complete out."""
        self._add(self._mel.step(samples))
        return self._codes(final=False)

    def flush(self) -> np.ndarray:
        """The last codes (the utterance's end stands in for their right context, as offline)."""
        self._add(self._mel.flush())
        codes = self._codes(final=True)
        self._reset()
        return codes

    def _add(self, frames: torch.Tensor) -> None:
        per = self.tokenizer.config.frames_per_token
        mel = torch.cat([self._pending, frames], dim=1)
        whole = mel.shape[1] // per * per
        self._pending = mel[:, whole:]
        self._slices = torch.cat([self._slices, self.tokenizer.slices(mel[:, :whole])])

    def _codes(self, final: bool) -> np.ndarray:
        context = self.tokenizer.config.context
        ready = len(self._slices) if final else len(self._slices) - context
        if ready <= self._given:
            return np.zeros(0, dtype=np.int64)
        codes = self.tokenizer.quantize(self._slices)[self._given : ready]
        keep = max(0, ready - context)  # slices before the `context` ones the next code needs are done
        self._slices, self._given = self._slices[keep:], ready - keep
        return codes


def code_vectors(path: str | Path) -> torch.Tensor:
    """[4096, D] a vector per acoustic code of the mini tokenizer at `path`, codes alike being near: the k-means
    centroids, or the FSQ values (the flow's token embeddings start from them)."""
    tokenizer = load_acoustic_mini(path)
    if isinstance(tokenizer, AcousticFSQTokenizer):
        return tokenizer.encoder.fsq.values(torch.arange(tokenizer.config.codebook_size))
    return tokenizer.centroids


def load_acoustic_mini(path: str | Path):
    """The mini acoustic tokenizer at `path`: the learned FSQ one or the k-means codebook, by its config."""
    from stepaudio.tokenizer.acoustic_mini import AcousticMiniTokenizer

    config = Path(path).with_suffix(".json")
    if config.is_file() and json.loads(config.read_text()).get("quantizer") == "fsq":
        return AcousticFSQTokenizer.load(path)
    return AcousticMiniTokenizer.load(path)
