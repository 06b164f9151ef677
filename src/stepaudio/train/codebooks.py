"""Recipe for the mini tokenizers' codebooks: k-means over features of a corpus's training split.

    stepaudio train kmeans acoustic --manifest corpus/manifest.jsonl --out acoustic_codebook.safetensors
    stepaudio train kmeans semantic --manifest corpus/manifest.jsonl --out semantic_codebook.safetensors

(A semantic codebook trained under an ASR loss instead: `stepaudio.train.semantic_codebook`.)

Utterances are drawn in a seeded random order up to an hours budget, so a run is reproducible and
a bigger budget extends a smaller one. The report gives the codebook's usage (perplexity, dead
codes) on the training features and on the held-out test split.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stepaudio.asr.transcribe import Transcriber
from stepaudio.audio import load_audio, log10_mel, peak_normalize
from stepaudio.rates import SAMPLE_RATE
from stepaudio.tokenizer.acoustic_mini import AcousticMiniConfig, AcousticMiniTokenizer, raw_slices
from stepaudio.tokenizer.semantic_mini import SemanticMiniTokenizer
from stepaudio.train.data.manifest import Utterance, manifest_dir, read_split
from stepaudio.train.kmeans import codebook_stats, train_kmeans

Featurize = Callable[[np.ndarray], torch.Tensor]  # 16 kHz samples -> [frames, dim]


def choose(manifest: Path, split: str, max_hours: float, seed: int) -> list[Utterance]:
    """A seeded random selection of the split's utterances, up to max_hours of audio."""
    utterances = read_split(manifest, split)
    random.Random(seed).shuffle(utterances)
    budget, chosen = max_hours * 3600, []
    for utt in utterances:
        if budget <= 0:
            break
        chosen.append(utt)
        budget -= utt.duration
    return chosen


def featurize_all(manifest: Path, utterances: list[Utterance], featurize: Featurize, desc: str) -> list[torch.Tensor]:
    """featurize(peak-normalised 16 kHz samples) of each utterance, with a progress bar."""
    root = manifest_dir(manifest)
    return [
        featurize(peak_normalize(load_audio(root / utt.audio, SAMPLE_RATE)[0]))
        for utt in tqdm(utterances, desc=desc, unit="utt")
    ]


def gather(manifest: Path, split: str, featurize: Featurize, max_hours: float, seed: int) -> torch.Tensor:
    """Features of a seeded random selection of the split's utterances, up to max_hours of audio."""
    chosen = choose(manifest, split, max_hours, seed)
    return torch.cat(featurize_all(manifest, chosen, featurize, f"features ({split})"))


def _report(train: torch.Tensor, test: torch.Tensor, centroids: torch.Tensor, out: Path, **command) -> dict:
    report = {
        "train_frames": len(train),
        "train": asdict(codebook_stats(train, centroids)),
        "test": asdict(codebook_stats(test, centroids)),
        "command": command,
    }
    Path(out).with_suffix(".report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def train_acoustic(
    manifest: Path,
    out: Path,
    codes: int = 4096,
    max_hours: float = 2.0,
    iterations: int = 30,
    seed: int = 0,
    utterance_mean: bool = False,
) -> dict:
    """Standardised 40 ms log-mel slices (statistics of the training features) -> k-means;
    utterance_mean: of the mel with each utterance's mean taken away (`AcousticMiniConfig.utterance_mean`)."""
    config = AcousticMiniConfig(codebook_size=codes, utterance_mean=utterance_mean)

    def featurize(samples: np.ndarray) -> torch.Tensor:
        return raw_slices(log10_mel(samples, config.n_mels), config)

    train = gather(manifest, "train", featurize, max_hours, seed)
    mean, std = train.mean(dim=0), train.std(dim=0).clamp_min(1e-3)
    train = (train - mean) / std
    centroids = train_kmeans(train, codes, iterations=iterations, seed=seed)
    AcousticMiniTokenizer(config, centroids, mean, std).save(out)
    test = (gather(manifest, "test", featurize, max_hours, seed) - mean) / std
    return _report(
        train, test, centroids, out, stream="acoustic", codes=codes, max_hours=max_hours, seed=seed,
        utterance_mean=utterance_mean,
    )  # fmt: skip


def train_semantic(
    manifest: Path, out: Path, codes: int = 1024, max_hours: float = 1.0, iterations: int = 30, seed: int = 0
) -> dict:
    """Whisper tiny.en encoder frames pooled to 16.67 Hz -> k-means (plain Euclidean, as the official)."""
    transcriber = Transcriber.load("mini")

    def featurize(samples: np.ndarray) -> torch.Tensor:
        return transcriber.encode(samples).pooled

    train = gather(manifest, "train", featurize, max_hours, seed)
    centroids = train_kmeans(train, codes, iterations=iterations, seed=seed)
    SemanticMiniTokenizer(transcriber, centroids).save(out)
    test = gather(manifest, "test", featurize, max_hours, seed)
    return _report(train, test, centroids, out, stream="semantic", codes=codes, max_hours=max_hours, seed=seed)
