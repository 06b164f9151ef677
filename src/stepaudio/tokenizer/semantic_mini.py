"""The mini semantic tokenizer: Whisper tiny.en encoder frames, pooled 3:1 to 16.67 Hz, nearest of
1024 k-means centroids.

Whisper's encoder was trained for ASR, so its frames keep what was said; the same encoder pass also
feeds the mini ASR (`stepaudio.asr.Transcriber.transcribe(encoded)`), so a voice turn is tokenized
and transcribed at the cost of one encoder run per 30 s window.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from stepaudio.asr.transcribe import Transcriber
from stepaudio.asr.whisper import EncoderOutput
from stepaudio.errors import CheckpointError, ModelNotFound
from stepaudio.tokenizer.input import SAMPLE_RATE, as_16k_mono
from stepaudio.train.kmeans import nearest


class SemanticMiniTokenizer:
    """Semantic codes at 16.67 Hz (n // 960 for n samples at 16 kHz) from one Whisper encoder pass."""

    def __init__(self, transcriber: Transcriber, centroids: torch.Tensor):
        if centroids.ndim != 2 or centroids.shape[1] != transcriber.model.config.d_model:
            raise CheckpointError(
                f"semantic codebook of shape {tuple(centroids.shape)} does not fit the "
                f"{transcriber.model.config.d_model}-dim Whisper encoder"
            )
        self.transcriber, self.centroids = transcriber, centroids

    def quantize(self, encoded: EncoderOutput) -> np.ndarray:
        return nearest(encoded.pooled, self.centroids)[0].numpy()

    def encode(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        return self.quantize(self.transcriber.encode(as_16k_mono(samples, sample_rate)))

    def save(self, path: str | Path) -> None:
        """Centroids as safetensors at `path`, the config as JSON beside it."""
        path = Path(path)
        save_file({"centroids": self.centroids.contiguous()}, path)
        config = {"codebook_size": len(self.centroids), "encoder": "whisper-tiny.en", "pool": 3}
        path.with_suffix(".json").write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, transcriber: Transcriber) -> SemanticMiniTokenizer:
        path = Path(path)
        if not path.is_file():
            raise ModelNotFound(f"semantic codebook not found: {path}")
        return cls(transcriber, load_file(path)["centroids"])
