"""The mini semantic tokenizer: Whisper tiny.en encoder frames, pooled 3:1 to 16.67 Hz, given the code of
the nearest of 1024 centroids: k-means ones in the encoder's space (the packaged codebook), or unit
vectors in a small projected space (cosine) trained under a CTC loss.

Whisper's encoder was trained for ASR, so its frames keep what was said; the same encoder pass also
feeds the mini ASR (`stepaudio.asr.Transcriber.transcribe(encoded)`), so a voice turn is tokenized
and transcribed at the cost of one encoder run per 30 s window. A projected codebook is trained with a
character recogniser that reads the codes (`stepaudio train semantic`), as the official 25 Hz
tokenizer's codebook is trained under an ASR loss, so that its codes keep more of what was said
(`stepaudio.train.semantic_codebook`; how it compares with the k-means codebook: docs/experiments.md).

Streaming: the encoder is bidirectional over its window and Whisper normalises the log-mel by the
clip's maximum, so no incremental form gives the offline codes exactly. `SemanticMiniStream`
re-encodes the utterance so far every `every` seconds of new audio and emits only codes at least
`lookahead` seconds old; `flush()` encodes the whole utterance and emits the rest. Codes already
emitted may differ from offline ones where the future audio would have changed them: the tests
bound that share on real speech.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from stepaudio.asr.transcribe import Transcriber
from stepaudio.asr.whisper import EncoderOutput
from stepaudio.errors import CheckpointError, ModelNotFound
from stepaudio.tokenizer.codebook import nearest
from stepaudio.tokenizer.input import SAMPLE_RATE, as_16k_mono
from stepaudio.tokenizer.interleave import SEMANTIC_RATE


class SemanticMiniTokenizer:
    """Semantic codes at 16.67 Hz (n // 960 for n samples at 16 kHz) from one Whisper encoder pass.

    centroids: [K, d_model] (k-means, Euclidean), or with projection = (weight [D, d_model], bias [D])
    [K, D] unit vectors (cosine in the projected space)."""

    def __init__(
        self,
        transcriber: Transcriber,
        centroids: torch.Tensor,
        projection: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        width = transcriber.model.config.d_model
        weight, bias = projection or (None, None)
        space = width if weight is None else weight.shape[0]
        fits = weight is None or (weight.ndim == 2 and weight.shape[1] == width and bias.shape == weight.shape[:1])
        if not fits or centroids.ndim != 2 or centroids.shape[1] != space:
            shapes = f"centroids {tuple(centroids.shape)}" + (
                "" if weight is None else f", projection {tuple(weight.shape)} + {tuple(bias.shape)}"
            )
            raise CheckpointError(f"semantic codebook: {shapes} do not fit the {width}-dim Whisper encoder")
        self.transcriber, self.centroids, self.projection = transcriber, centroids, projection

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled encoder frames [N, d_model] -> the space of the centroids (unit vectors when projected)."""
        if self.projection is None:
            return pooled
        return F.normalize(F.linear(pooled.float(), *self.projection), dim=-1)

    def quantize(self, encoded: EncoderOutput) -> np.ndarray:
        return nearest(self.project(encoded.pooled), self.centroids)[0].numpy()

    def encode(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        return self.quantize(self.transcriber.encode(as_16k_mono(samples, sample_rate)))

    def stream(self, lookahead: float = 1.0, every: float = 1.0) -> SemanticMiniStream:
        return SemanticMiniStream(self, lookahead, every)

    def save(self, path: str | Path) -> None:
        """Centroids (and projection) as safetensors at `path`, the config as JSON beside it."""
        path = Path(path)
        tensors = {"centroids": self.centroids}
        if self.projection is not None:
            tensors |= {"projection.weight": self.projection[0], "projection.bias": self.projection[1]}
        save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, path)
        config = {"codebook_size": len(self.centroids), "encoder": "whisper-tiny.en", "pool": 3}
        if self.projection is not None:
            config |= {"dim": self.projection[0].shape[0], "metric": "cosine"}
        path.with_suffix(".json").write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, transcriber: Transcriber) -> SemanticMiniTokenizer:
        path = Path(path)
        if not path.is_file():
            raise ModelNotFound(f"semantic codebook not found: {path}")
        tensors = load_file(path)
        projection = None
        if "projection.weight" in tensors:
            projection = (tensors["projection.weight"], tensors["projection.bias"])
        return cls(transcriber, tensors["centroids"], projection)


class SemanticMiniStream:
    """One live utterance: codes at least `lookahead` s old come out as audio arrives, the rest at `flush()`."""

    def __init__(self, tokenizer: SemanticMiniTokenizer, lookahead: float, every: float):
        self.tokenizer, self.lookahead, self.every = tokenizer, lookahead, every
        self._reset()

    def _reset(self) -> None:
        self._audio = np.zeros(0, dtype=np.float32)
        self._encoded_at = 0  # samples in the buffer at the last encoding
        self._emitted = 0  # codes emitted

    def step(self, samples: np.ndarray) -> np.ndarray:
        self._audio = np.concatenate([self._audio, np.asarray(samples, dtype=np.float32)])
        if len(self._audio) - self._encoded_at < self.every * SAMPLE_RATE:
            return np.zeros(0, dtype=np.int64)
        self._encoded_at = len(self._audio)
        settled = int((len(self._audio) / SAMPLE_RATE - self.lookahead) * SEMANTIC_RATE)
        return self._emit(settled)

    def flush(self) -> np.ndarray:
        codes = self._emit(None) if len(self._audio) else np.zeros(0, dtype=np.int64)
        self._reset()
        return codes

    def _emit(self, upto: int | None) -> np.ndarray:
        if upto is not None and upto <= self._emitted:
            return np.zeros(0, dtype=np.int64)
        codes = self.tokenizer.encode(self._audio)[self._emitted : upto]
        self._emitted += len(codes)
        return codes
