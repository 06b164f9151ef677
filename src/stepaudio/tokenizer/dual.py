"""The dual-codebook tokenizer: audio -> semantic (16.67 Hz) + acoustic (25 Hz) codes, interleaved 2:3.

One class for both kinds of weights: the official pair (streaming Paraformer + k-means, S3 v1 25 Hz)
or the mini pair (Whisper tiny.en encoder + k-means; a 40 ms log-mel codebook, k-means or learned). Input is conditioned
as the official does: mono, 16 kHz, peak-normalised; voice prompts are also silence-trimmed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from stepaudio.audio import peak_normalize, trim_silence
from stepaudio.models.store import MINI, resolve_model
from stepaudio.tokenizer.input import SAMPLE_RATE, as_16k_mono
from stepaudio.tokenizer.interleave import (
    ACOUSTIC_PER_GROUP,
    GROUP_SIZE,
    SEMANTIC_PER_GROUP,
    AudioTokens,
    interleave,
)


def mini_tokens_tag() -> str:
    """Names the tokens mini's tokenizer makes, for caches of prompt tokens: `mini-` and a hash of its
    codebooks, which change when they are retrained, so tokens cached by earlier ones are not read as
    today's. (The official tokenizer is fixed: its caches are tagged `official`.)"""
    resolved = resolve_model(MINI)
    digest = hashlib.sha256()
    for component in ("semantic_codebook", "acoustic_codebook"):
        weights = resolved.require(component)
        for file in (weights, weights.with_suffix(".json")):  # the loaders need both
            digest.update(file.read_bytes())
    return f"mini-{digest.hexdigest()[:8]}"


class CodeStream(Protocol):
    def step(self, samples: np.ndarray) -> np.ndarray: ...
    def flush(self) -> np.ndarray: ...


class StreamTokenizer(Protocol):
    def encode(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray: ...
    def stream(self) -> CodeStream: ...


def conditioned(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Offline input of both streams: 16 kHz mono at full peak level."""
    return peak_normalize(as_16k_mono(samples, sample_rate))


@dataclass
class DualTokenizer:
    semantic: StreamTokenizer  # codes 0..1023 at 16.67 Hz
    acoustic: StreamTokenizer  # codes 0..4095 at 25 Hz

    @classmethod
    def load(cls, model: str | Path = MINI) -> DualTokenizer:
        """`mini`, or a directory holding the official Step-Audio-Tokenizer folder."""
        resolved = resolve_model(model)
        if resolved.kind == "mini":
            from stepaudio.asr.transcribe import Transcriber
            from stepaudio.tokenizer.acoustic_fsq import load_acoustic_mini
            from stepaudio.tokenizer.semantic_mini import SemanticMiniTokenizer

            semantic_codebook = resolved.require("semantic_codebook")
            acoustic_codebook = resolved.require("acoustic_codebook")
            transcriber = Transcriber.load(MINI)
            return cls(
                SemanticMiniTokenizer.load(semantic_codebook, transcriber),
                load_acoustic_mini(acoustic_codebook),
            )
        from stepaudio.tokenizer.s3 import AcousticTokenizer
        from stepaudio.tokenizer.semantic import SemanticTokenizer

        return cls(SemanticTokenizer.from_pretrained(model), AcousticTokenizer.from_pretrained(model))

    def stream_encoders(self):
        """The two halves of `encode` (no prompt trimming), each conditioning its input as `encode` does:
        `stepaudio data tokenize` makes again only the stream whose codebook changed."""

        def encoder(stream: StreamTokenizer):
            return lambda samples, sample_rate: stream.encode(conditioned(samples, sample_rate))

        return encoder(self.semantic), encoder(self.acoustic)

    def encode(self, samples: np.ndarray, sample_rate: int, *, prompt: bool = False) -> AudioTokens:
        """Both streams of one utterance; `prompt=True` trims silence as for a voice-cloning prompt."""
        samples = conditioned(samples, sample_rate)
        if prompt:
            samples = trim_silence(samples, SAMPLE_RATE)
        return AudioTokens(self.semantic.encode(samples), self.acoustic.encode(samples))

    def stream(self) -> DualStream:
        return DualStream(self.semantic.stream(), self.acoustic.stream())


class DualStream:
    """One live utterance of 16 kHz mono samples: `step` and `flush` return the interleaved audio
    indices of the groups newly completed by both streams. Streaming skips the offline peak
    normalisation (a stream cannot know its peak in advance): feed audio at a sensible level."""

    def __init__(self, semantic: CodeStream, acoustic: CodeStream):
        self.semantic, self.acoustic = semantic, acoustic
        self._semantic = np.zeros(0, dtype=np.int64)  # codes not yet in an emitted group
        self._acoustic = np.zeros(0, dtype=np.int64)

    def step(self, samples: np.ndarray) -> np.ndarray:
        return self._groups(self.semantic.step(samples), self.acoustic.step(samples))

    def flush(self) -> np.ndarray:
        out = self._groups(self.semantic.flush(), self.acoustic.flush())
        self._semantic, self._acoustic = self._semantic[:0], self._acoustic[:0]
        return out

    def _groups(self, semantic: np.ndarray, acoustic: np.ndarray) -> np.ndarray:
        self._semantic = np.concatenate([self._semantic, semantic])
        self._acoustic = np.concatenate([self._acoustic, acoustic])
        indices = interleave(self._semantic, self._acoustic)
        groups = len(indices) // GROUP_SIZE
        self._semantic = self._semantic[groups * SEMANTIC_PER_GROUP :]
        self._acoustic = self._acoustic[groups * ACOUSTIC_PER_GROUP :]
        return indices
