"""Training data for the speech decoder, read from a corpus manifest.

The manifest is the corpus format of `stepaudio.train.data.manifest`; the decoder also needs each
utterance's speech tokens, either from its `tokens` file or from a tokenize function given to the
dataset. Features (decoder mel, tokens, speaker embedding, F0, 22.05 kHz audio) are
computed once per utterance and cached as safetensors, so epochs after the first only read files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from stepaudio.audio import load_audio, mel_spectrogram, resample
from stepaudio.audio.decoder_mel import HOP_LENGTH, SAMPLE_RATE
from stepaudio.audio.whisper_mel import log10_mel
from stepaudio.errors import DataError, TokenError
from stepaudio.rates import SAMPLE_RATE as TOKENIZER_RATE
from stepaudio.tokenizer.interleave import AUDIO_TOKENS_PER_SECOND, AUDIO_VOCAB
from stepaudio.train.data.manifest import Utterance, manifest_dir, read_split

Tokenize = Callable[[np.ndarray], np.ndarray]  # 16 kHz samples -> token ids
Embed = Callable[[np.ndarray], torch.Tensor]  # 16 kHz samples -> speaker embedding


def estimate_f0(samples: np.ndarray, hop: int = HOP_LENGTH, fmin: float = 60.0, fmax: float = 500.0) -> np.ndarray:
    """F0 in Hz per decoder mel frame (0 = unvoiced) of 22.05 kHz samples: YIN for the period, and a
    frame is voiced when the signal correlates well (> 0.6) with itself one period later."""
    import librosa

    frame = 1024
    f0 = librosa.yin(samples, fmin=fmin, fmax=fmax, sr=SAMPLE_RATE, frame_length=frame, hop_length=hop)
    frames = librosa.util.frame(np.pad(samples, frame // 2), frame_length=frame, hop_length=hop)  # [1024, F]
    count = min(len(samples) // hop, f0.shape[0], frames.shape[1])
    voiced = np.zeros(count, dtype=bool)
    for i in range(count):
        period = int(round(SAMPLE_RATE / f0[i]))
        a, b = frames[: frame - period, i], frames[period:, i]
        denominator = np.sqrt((a @ a) * (b @ b))
        voiced[i] = denominator > 1e-8 and (a @ b) / denominator > 0.6
    return np.where(voiced, f0[:count], 0.0).astype(np.float32)


def tokenized(utterances: list[Utterance], root: Path) -> list[Utterance]:
    """The utterances whose token files exist (a corpus being tokenized can already be trained on);
    none at all is an error."""
    kept = [u for u in utterances if u.tokens is not None and (root / u.tokens).is_file()]
    if not kept:
        raise DataError(
            f"no utterance of {root} has a `tokens` file and no tokenizer was given; "
            "run `stepaudio data tokenize CORPUS` first"
        )
    if len(kept) < len(utterances):
        print(f"training on the {len(kept)} of {len(utterances)} utterances that have token files")
    return kept


class DecoderDataset(torch.utils.data.Dataset):
    """Utterance i -> what one recipe (`kind`) trains on, cached per utterance: the flow's {tokens [N], mel [80, T],
    embedding [D]}, the vocoder's {mel [80, T], f0 [T], audio [T * 256]} or the acoustic tokenizer's {logmel
    [80, F] (its 16 kHz input, `log10_mel`), mel [80, T], embedding [D]}."""

    KINDS = ("flow", "vocoder", "acoustic")

    def __init__(
        self,
        manifest: Path,
        split: str,
        cache_dir: Path,
        tokenize: Tokenize | None = None,
        embed: Embed | None = None,
        embedding_dim: int = 256,
        kind: str = "flow",
    ):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, not {kind!r}")
        self.utterances, self.root = read_split(manifest, split), manifest_dir(manifest)
        if kind == "flow" and tokenize is None:
            self.utterances = tokenized(self.utterances, self.root)
        self.cache_dir = Path(cache_dir)
        self.tokenize, self.embed, self.embedding_dim, self.kind = tokenize, embed, embedding_dim, kind
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.utterances)

    def _cache_path(self, utterance: Utterance) -> Path:
        audio = (self.root / utterance.audio).resolve()
        stat = audio.stat()
        embedder = f"{type(self.embed).__name__}:{self.embedding_dim}" if self.embed else "none"
        tokens = self.root / utterance.tokens if utterance.tokens else None
        made = tokens.stat().st_mtime_ns if tokens and tokens.is_file() else None  # tokens made again: a new key
        kind = {"flow": False, "vocoder": True}.get(self.kind, self.kind)  # as keyed before the acoustic kind
        key = f"{audio}|{stat.st_mtime_ns}|{stat.st_size}|{utterance.tokens}|{made}|{kind}|{embedder}"
        return self.cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.safetensors"

    def _tokens(self, utterance: Utterance, samples16: np.ndarray) -> torch.Tensor:
        if utterance.tokens is not None and (self.root / utterance.tokens).is_file():
            tokens = np.load(self.root / utterance.tokens)
        else:
            tokens = self.tokenize(samples16)
        tokens = torch.as_tensor(np.asarray(tokens)).long().reshape(-1)
        if tokens.numel() == 0 or int(tokens.min()) < 0 or int(tokens.max()) >= AUDIO_VOCAB:
            raise TokenError(f"tokens of {utterance.audio} are empty or outside 0..{AUDIO_VOCAB - 1}")
        return tokens

    def _features(self, utterance: Utterance) -> dict[str, torch.Tensor]:
        samples, rate = load_audio(self.root / utterance.audio)
        audio = resample(samples, rate, SAMPLE_RATE)
        samples16 = resample(samples, rate, TOKENIZER_RATE)
        mel = mel_spectrogram(audio)
        if self.kind == "vocoder":
            f0 = torch.from_numpy(estimate_f0(audio))
            return {
                "mel": mel,
                "f0": torch.nn.functional.pad(f0, (0, mel.shape[1] - len(f0))),
                "audio": torch.from_numpy(audio[: mel.shape[1] * HOP_LENGTH].copy()),
            }
        embedding = self.embed(samples16).float() if self.embed else torch.zeros(self.embedding_dim)
        if self.kind == "acoustic":
            return {"logmel": log10_mel(samples16).contiguous(), "mel": mel, "embedding": embedding}
        return {"tokens": self._tokens(utterance, samples16), "mel": mel, "embedding": embedding}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        utterance = self.utterances[index]
        path = self._cache_path(utterance)
        if path.is_file():
            return load_file(str(path))
        features = self._features(utterance)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        save_file(features, str(partial))
        os.replace(partial, path)  # atomic: ranks that race write the same file
        return features


def crop_flow_example(example: dict, max_tokens: int | None, generator: torch.Generator | None) -> dict:
    """A random run of whole 5-token groups, at most max_tokens (None: all), with the mel frames it spans.
    The mel is cut to its tokens' time even when they all fit: the tokenizer drops a last partial group,
    and the regulator stretches tokens over the frames it is given."""
    tokens, mel = example["tokens"], example["mel"]
    if max_tokens is None or len(tokens) <= max_tokens:
        start, stop = 0, len(tokens)
    else:
        keep = max(1, max_tokens // 5)
        start = int(torch.randint(0, len(tokens) // 5 - keep + 1, (1,), generator=generator)) * 5
        stop = start + keep * 5

    def frame(n):
        return min(mel.shape[1], int(n / AUDIO_TOKENS_PER_SECOND * SAMPLE_RATE / HOP_LENGTH))

    return example | {"tokens": tokens[start:stop], "mel": mel[:, frame(start) : frame(stop)]}


def collate_flow(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Pad to the longest: tokens [B, N] (+ lengths), mel [B, 80, T] (+ lengths), embedding [B, D]."""
    token_lengths = torch.tensor([len(e["tokens"]) for e in examples])
    mel_lengths = torch.tensor([e["mel"].shape[1] for e in examples])
    tokens = torch.zeros(len(examples), int(token_lengths.max()), dtype=torch.long)
    mel = torch.zeros(len(examples), examples[0]["mel"].shape[0], int(mel_lengths.max()))
    for i, e in enumerate(examples):
        tokens[i, : len(e["tokens"])] = e["tokens"]
        mel[i, :, : e["mel"].shape[1]] = e["mel"]
    embedding = torch.stack([e["embedding"] for e in examples])
    return {
        "tokens": tokens,
        "token_lengths": token_lengths,
        "mel": mel,
        "mel_lengths": mel_lengths,
        "embedding": embedding,
    }


def vocoder_segment(example: dict, frames: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Aligned random segment: mel [80, frames], f0 [frames], audio [frames * 256] (zero-padded if short)."""
    mel, f0, audio = example["mel"], example["f0"], example["audio"]
    total = mel.shape[1]
    if total < frames:
        pad = frames - total
        mel = torch.nn.functional.pad(mel, (0, pad), value=float(mel.min()))
        f0 = torch.nn.functional.pad(f0, (0, pad))
        audio = torch.nn.functional.pad(audio, (0, pad * HOP_LENGTH))
        total = frames
    start = int(torch.randint(0, total - frames + 1, (1,), generator=generator))
    span = slice(start * HOP_LENGTH, (start + frames) * HOP_LENGTH)
    return {"mel": mel[:, start : start + frames], "f0": f0[start : start + frames], "audio": audio[span]}
