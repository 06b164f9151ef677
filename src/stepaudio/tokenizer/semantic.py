"""The official semantic tokenizer (Step-Audio's "vq02"): 16.67 Hz tokens from 1024 codes.

Audio -> Paraformer front end (fbank 80 -> LFR 7/6 -> CMVN, 560-dim at 60 ms) -> the streaming SAN-M
encoder run chunk by chunk as the official tokenizer runs it -> the nearest of 1024 k-means centroids
(Euclidean) for each 512-dim frame.

The official code feeds FunASR 240 ms (3840-sample) strides; each whole stride gives exactly 4 LFR
frames, one encoder chunk. The last, partial stride gives the remaining frames as one more chunk, but
FunASR's streaming front end (the copy Step-Audio vendors) returns nothing for it when it cannot
complete one 7-frame LFR window from real fbank frames, so then the end-padded frame is dropped. A
stream here groups frames the same way whatever the feeding, so streaming equals offline exactly.
FunASR dithers the fbank by default (1.0 on int16-scale samples, noise of about one LSB); this
computes it without dither, so tokens are deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from stepaudio.audio import Cmvn, ParaformerFrontend
from stepaudio.audio.fbank import FRAME_SHIFT_MS, LFR_M, LFR_N, NUM_MEL_BINS
from stepaudio.errors import AudioError, CheckpointError, ModelNotFound
from stepaudio.models.checkpoint import load_exact
from stepaudio.models.store import PARAFORMER_DIR, resolve_model
from stepaudio.tokenizer.input import SAMPLE_RATE, as_16k_mono
from stepaudio.tokenizer.interleave import SEMANTIC_CODES
from stepaudio.tokenizer.paraformer import CHUNK_SIZE, SanmConfig, SanmEncoder

KMEANS_FILE = "linguistic_tokenizer.npy"
ENCODER_CLASS = "SANMEncoderChunkOpt"
FRAMES_PER_CHUNK = CHUNK_SIZE[1]  # LFR frames per encoder call
STRIDE_SAMPLES = FRAMES_PER_CHUNK * LFR_N * FRAME_SHIFT_MS * SAMPLE_RATE // 1000  # 3840 samples per call

# Config keys this code depends on: (FunASR's default when a config omits the key, the value implemented here).
_FRONTEND_CONF = {
    "fs": (16000, SAMPLE_RATE),
    "window": ("hamming", "hamming"),
    "n_mels": (80, NUM_MEL_BINS),
    "frame_length": (25, 25),
    "frame_shift": (10, FRAME_SHIFT_MS),
    "lfr_m": (1, LFR_M),
    "lfr_n": (1, LFR_N),
}
_ENCODER_CONF = {
    "input_layer": ("conv2d", "pe_online"),
    "selfattention_layer_type": ("sanm", "sanm"),
    "normalize_before": (True, True),
    "positionwise_layer_type": ("linear", "linear"),
    "concat_after": (False, False),
}


def _check_conf(conf: dict, table: dict, section: str, path: Path) -> None:
    for key, (default, implemented) in table.items():
        value = conf.get(key, default)
        if value != implemented:
            raise CheckpointError(f"{path}: {section}.{key} is {value!r}; this code implements {implemented!r} only")


def read_config(path: Path) -> SanmConfig:
    """The SAN-M shape from a FunASR `config.yaml`, after checking it is the model this code implements."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    if not isinstance(config, dict) or not isinstance(config.get("encoder_conf"), dict):
        raise CheckpointError(f"{path} has no encoder_conf mapping; is it a FunASR model config.yaml?")
    if config.get("encoder") != ENCODER_CLASS:
        raise CheckpointError(f"{path}: encoder is {config.get('encoder')!r}, expected {ENCODER_CLASS}")
    _check_conf(config.get("frontend_conf") or {}, _FRONTEND_CONF, "frontend_conf", path)
    encoder = config["encoder_conf"]
    _check_conf(encoder, _ENCODER_CONF, "encoder_conf", path)
    missing = [key for key in ("output_size", "attention_heads", "linear_units", "num_blocks") if key not in encoder]
    if missing:
        raise CheckpointError(f"{path}: encoder_conf lacks {', '.join(missing)}")
    return SanmConfig(
        input_size=NUM_MEL_BINS * LFR_M,
        output_size=int(encoder["output_size"]),
        attention_heads=int(encoder["attention_heads"]),
        linear_units=int(encoder["linear_units"]),
        num_blocks=int(encoder["num_blocks"]),
        kernel_size=int(encoder.get("kernel_size", 11)),
        sanm_shift=int(encoder.get("sanm_shfit", 0)),
    )


def encoder_weights(path: Path) -> dict[str, torch.Tensor]:
    """The `encoder.*` tensors of a FunASR `model.pt`, prefix removed (decoder, predictor, ... are not needed)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"cannot load {path} as a PyTorch state dict: {error}") from error
    for wrapper in ("state_dict", "model_state_dict", "model"):  # the layouts FunASR's loader accepts
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    weights = {}
    for name, tensor in checkpoint.items():
        name = name.removeprefix("module.")
        if name.startswith("encoder."):
            weights[name.removeprefix("encoder.")] = tensor
    if not weights:
        raise CheckpointError(f"{path} has no encoder.* weights; is it a Paraformer model.pt?")
    return weights


def load_encoder(folder: Path) -> SanmEncoder:
    """The SAN-M encoder from a FunASR model folder (config.yaml + model.pt)."""
    encoder = SanmEncoder(read_config(folder / "config.yaml"))
    weights = encoder_weights(folder / "model.pt")
    load_exact(encoder, weights, f"{folder / 'model.pt'} (with its config.yaml)")
    return encoder.eval()


def load_centroids(path: Path, dim: int) -> torch.Tensor:
    """The k-means table [1024, dim] float32."""
    if not path.is_file():
        raise ModelNotFound(f"k-means table not found: {path}")
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path} as a numpy array: {error}") from error
    if table.shape != (SEMANTIC_CODES, dim) or not np.issubdtype(table.dtype, np.floating):
        raise CheckpointError(f"{path} holds {table.dtype} {table.shape}, expected float ({SEMANTIC_CODES}, {dim})")
    return torch.from_numpy(table.astype(np.float32))


class SemanticTokenizer:
    """Official semantic tokens: `encode(samples, sample_rate)` offline, `stream()` for live audio."""

    def __init__(self, frontend: ParaformerFrontend, encoder: SanmEncoder, centroids: torch.Tensor):
        self.frontend = frontend
        self.encoder = encoder
        self.centroids = centroids  # [codes, d]

    @classmethod
    def from_pretrained(cls, model: str | Path | None = None) -> SemanticTokenizer:
        """From an official checkpoint directory (the Step-Audio-Tokenizer folder or its parent)."""
        folder = resolve_model(model).require("tokenizer")
        paraformer = folder / PARAFORMER_DIR
        encoder = load_encoder(paraformer)
        frontend = ParaformerFrontend(Cmvn.from_kaldi(paraformer / "am.mvn"))
        return cls(frontend, encoder, load_centroids(folder / KMEANS_FILE, encoder.config.output_size))

    def quantize(self, features: torch.Tensor) -> np.ndarray:
        """Encoder frames [n, d] -> codes [n] of the nearest centroid."""
        if len(features) == 0:
            return np.zeros(0, dtype=np.int64)
        return torch.cdist(features, self.centroids).argmin(dim=-1).numpy().astype(np.int64)

    def stream(self) -> SemanticStream:
        return SemanticStream(self)

    def encode_features(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """Encoder output [n, d] at 16.67 Hz, as the official streaming encoder gives it."""
        stream = self.stream()
        samples = as_16k_mono(samples, sample_rate)
        return torch.cat([stream.step_features(samples), stream.flush_features()])

    def encode(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Semantic codes [n] in 0..1023, n = about 16.67 per second."""
        return self.quantize(self.encode_features(samples, sample_rate))


class SemanticStream:
    """One live utterance: `step(samples)` gives the codes ready so far, `flush()` the rest, then resets.

    Samples are 16 kHz mono float32 in any chunking; the codes equal `encode` of the whole audio.
    """

    def __init__(self, tokenizer: SemanticTokenizer):
        self.tokenizer = tokenizer
        self._reset()

    def _reset(self) -> None:
        self._frontend = self.tokenizer.frontend.stream()
        self._encoder = self.tokenizer.encoder.new_state()
        self._samples = 0  # samples received
        self._complete = 0  # LFR frames whose 7-frame window held only real fbank frames
        self._pending = []  # complete frames not yet encoded, [1, 560] each

    def step(self, samples: np.ndarray) -> np.ndarray:
        return self.tokenizer.quantize(self.step_features(samples))

    def flush(self) -> np.ndarray:
        return self.tokenizer.quantize(self.flush_features())

    def step_features(self, samples: np.ndarray) -> torch.Tensor:
        samples = np.asarray(samples)
        if samples.size:
            if samples.ndim != 1:
                raise AudioError(f"stream chunks must be 1-D 16 kHz mono samples, got shape {samples.shape}")
            samples = as_16k_mono(samples, SAMPLE_RATE)
        frames = self._frontend.step(samples.astype(np.float32))
        self._samples += samples.size
        self._complete += len(frames)
        self._pending.extend(torch.from_numpy(frames)[:, None])
        chunks = []
        while len(self._pending) >= FRAMES_PER_CHUNK:
            chunk, self._pending = self._pending[:FRAMES_PER_CHUNK], self._pending[FRAMES_PER_CHUNK:]
            chunks.append(self._encode(chunk))
        return torch.cat(chunks) if chunks else self._empty()

    def flush_features(self) -> torch.Tensor:
        tail = torch.from_numpy(self._frontend.flush())[:, None]
        if self._complete > FRAMES_PER_CHUNK * (self._samples // STRIDE_SAMPLES):
            self._pending.extend(tail)  # the last stride completed an LFR window: the official keeps its frames
        out = self._encode(self._pending) if self._pending else self._empty()
        self._reset()
        return out

    def _encode(self, frames: list[torch.Tensor]) -> torch.Tensor:
        return self.tokenizer.encoder.forward_chunk(torch.cat(frames, dim=0)[None], self._encoder)[0]

    def _empty(self) -> torch.Tensor:
        return torch.zeros(0, self.tokenizer.encoder.config.output_size)
