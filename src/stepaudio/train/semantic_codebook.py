"""Recipe for the mini semantic codebook: a vector quantiser on Whisper tiny.en frames, trained so that
a small character recogniser can read what was said from its codes.

    stepaudio train semantic --manifest corpus/manifest.jsonl --out runs/semantic \
        --export semantic_codebook.safetensors

Why supervised: k-means on the same frames (the packaged codebook) keeps the frames' largest variations,
which are as much voice and channel as words; the speech decoder and the TTS LM then see codes that
say too little about the text. Here the projection and the 1024 codes are trained together with a CTC
character recogniser of two 5-wide convolutions (too little context to guess words on its own, so the
codes must carry them), as the official 25 Hz (S3) tokenizer's codebook is trained under an ASR loss.

Codes are unit vectors compared by cosine (straight-through gradients, a commitment loss); codes that
no frame chose during `restart_every` steps restart at frames of the last batch, so the codebook is
used rather than collapsing to a few hundred codes. The report (beside the codebook) gives the
recogniser's CER per language on the held-out test split and the codes' usage there. How its codes,
and the decoder and TTS LM retrained on them, compared with the k-means ones: docs/experiments.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import jiwer
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.asr.transcribe import Transcriber
from stepaudio.errors import DataError
from stepaudio.tokenizer.semantic_mini import SemanticMiniTokenizer
from stepaudio.train.codebooks import choose, featurize_all
from stepaudio.train.data.manifest import Utterance
from stepaudio.train.kmeans import codebook_stats
from stepaudio.train.loop import TrainOptions, train
from stepaudio.tts.text import normalize

POOL = 3  # encoder frames (50 Hz) per code (16.67 Hz): the reader reads at 50 Hz


def transcript_units(text: str, language: str) -> str:
    """What the recogniser spells: numbers as words, letters (any script) lower-cased, apostrophes and
    single spaces between words; punctuation dropped."""
    kept = "".join(c for c in normalize(text, language).lower() if c.isalpha() or c in " '")
    return re.sub(r" +", " ", kept).strip()


class CodeReader(nn.Module):
    """Codes' vectors [B, T, D] -> character logits [B, T * POOL, vocab + 1] (0: the CTC blank), with a
    receptive field of a few codes only."""

    def __init__(self, dim: int, vocab: int, width: int = 256):
        super().__init__()
        self.input = nn.Linear(dim, width)
        self.conv1 = nn.Conv1d(width, width, 5, padding=2)
        self.conv2 = nn.Conv1d(width, width, 5, padding=2)
        self.output = nn.Linear(width, vocab + 1)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        x = self.input(vectors).repeat_interleave(POOL, dim=1).transpose(1, 2)
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x)) + x
        return self.output(x.transpose(1, 2))


class CodebookObjective(nn.Module):
    """Projection + cosine codebook + CTC reader; loss = CTC + codebook and commitment terms."""

    def __init__(self, width: int, dim: int, codes: int, vocab: int, restart_every: int = 50):
        super().__init__()
        self.projection = nn.Linear(width, dim)
        self.centroids = nn.Parameter(F.normalize(torch.randn(codes, dim), dim=1))
        self.reader = CodeReader(dim, vocab)
        self.restart_every, self.calls = restart_every, 0
        self.register_buffer("usage", torch.zeros(codes), persistent=False)  # per restart window only

    def unit_centroids(self) -> torch.Tensor:
        return F.normalize(self.centroids.float(), dim=-1)

    def quantize(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled frames [..., width] -> (unit vectors z, their nearest codes' vectors q, codes)."""
        z = F.normalize(self.projection(frames).float(), dim=-1)
        book = self.unit_centroids()
        codes = (z @ book.T).argmax(-1)
        return z, book[codes], codes

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        if self.training:
            self._restart_unused()  # before this step's graph uses the centroids
        z, q, codes = self.quantize(batch["frames"])
        valid = torch.arange(z.shape[1], device=z.device)[None] < batch["lengths"][:, None]
        quantizer = F.mse_loss(q[valid], z[valid].detach()) + 0.25 * F.mse_loss(z[valid], q[valid].detach())
        logits = self.reader(z + (q - z).detach())
        ctc = F.ctc_loss(
            logits.float().log_softmax(-1).transpose(0, 1),
            batch["targets"],
            batch["lengths"] * POOL,
            batch["target_lengths"],
            zero_infinity=True,
        )
        if self.training:
            self._count(z[valid].detach(), codes[valid])
        return ctc + quantizer, {"ctc": ctc.detach(), "quantizer": quantizer.detach()}

    @torch.no_grad()
    def _count(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        self.usage += torch.bincount(codes, minlength=len(self.usage)).float()
        self.calls += 1
        self._recent = z

    @torch.no_grad()
    def _restart_unused(self) -> None:
        if not self.calls or self.calls % self.restart_every:
            return
        unused = (self.usage == 0).nonzero().flatten()
        if len(unused):
            picks = torch.randint(0, len(self._recent), (len(unused),), device=self._recent.device)
            self.centroids[unused] = self._recent[picks].to(self.centroids.dtype)
        self.usage.zero_()
        self.calls = 0


def collate_frames(items: list[tuple[torch.Tensor, list[int]]]) -> dict[str, torch.Tensor]:
    lengths = torch.tensor([len(f) for f, _ in items])
    frames = torch.zeros(len(items), int(lengths.max()), items[0][0].shape[1])
    for i, (f, _) in enumerate(items):
        frames[i, : len(f)] = f.float()
    return {
        "frames": frames,
        "lengths": lengths,
        "targets": torch.tensor([c for _, t in items for c in t]),
        "target_lengths": torch.tensor([len(t) for _, t in items]),
    }


def greedy_ctc(logits: torch.Tensor, vocabulary: str) -> str:
    """Best path, repeats merged, blanks dropped."""
    best, out, previous = logits.argmax(-1).tolist(), [], 0
    for index in best:
        if index not in (0, previous):
            out.append(vocabulary[index - 1])
        previous = index
    return "".join(out).strip()


@torch.no_grad()
def evaluate(objective: CodebookObjective, frames: list, utterances: list[Utterance], vocabulary: str) -> dict:
    """The reader's CER per language on held-out utterances, and the codes' usage there."""
    objective.eval().cpu()
    by_language: dict[str, tuple[list, list]] = {}
    projected = []
    for f, utt in zip(frames, utterances, strict=True):
        z, q, _ = objective.quantize(f.float())
        projected.append(z)
        references, hypotheses = by_language.setdefault(utt.language, ([], []))
        references.append(transcript_units(utt.text, utt.language))
        hypotheses.append(greedy_ctc(objective.reader(q[None])[0], vocabulary))
    return {
        "cer": {lang: round(jiwer.cer(refs, hyps), 4) for lang, (refs, hyps) in sorted(by_language.items())},
        "utterances": {lang: len(refs) for lang, (refs, _) in sorted(by_language.items())},
        "usage": asdict(codebook_stats(torch.cat(projected), objective.unit_centroids())),
    }


def train_semantic_codebook(
    manifest: Path,
    options: TrainOptions,
    export: Path,
    codes: int = 1024,
    dim: int = 32,
    max_hours: float = 3.0,
) -> dict:
    """Train the codebook on up to max_hours of the training split; write it to `export` (+ .json) and
    the test split's report to `export`.report.json. Encoder frames are cached in the run directory."""
    transcriber = Transcriber.load("mini")
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = {split: choose(manifest, split, max_hours, options.seed) for split in ("train", "test")}
    cache = out / "frames.pt"
    key = {split: [u.audio for u in utts] for split, utts in chosen.items()}
    cached = torch.load(cache, weights_only=True) if cache.is_file() else None

    def pooled(samples: np.ndarray) -> torch.Tensor:
        return transcriber.encode(samples).pooled.half()

    if cached is None or cached["key"] != key:
        frames = {s: featurize_all(manifest, u, pooled, f"encoder frames ({s})") for s, u in chosen.items()}
        torch.save({"key": key, "frames": frames}, cache)
    else:
        frames = cached["frames"]
    texts = [transcript_units(u.text, u.language) for u in chosen["train"]]
    vocabulary = "".join(sorted(set("".join(texts))))
    if not vocabulary:
        raise DataError(f"the training split of {manifest} has no transcripts to train the semantic codebook on")
    ids = {c: i + 1 for i, c in enumerate(vocabulary)}
    targets = [[ids[c] for c in text] for text in texts]
    # a plain list is a map-style dataset; utterances too short for their text cannot be aligned by CTC
    dataset = [(f, t) for f, t in zip(frames["train"], targets, strict=True) if t and len(f) * POOL >= len(t)]
    width = transcriber.model.config.d_model
    objective = CodebookObjective(width, dim, codes, len(vocabulary))

    def save() -> None:
        centroids = objective.unit_centroids().detach().cpu()
        weight, bias = (p.detach().float().cpu() for p in (objective.projection.weight, objective.projection.bias))
        SemanticMiniTokenizer(transcriber, centroids, (weight, bias)).save(export)

    step = train(objective, dataset, collate_frames, options, save)
    report = {
        "step": step,
        "train_utterances": len(dataset),
        "vocabulary": vocabulary,
        "test": evaluate(objective, frames["test"], chosen["test"], vocabulary),
        "command": {"codes": codes, "dim": dim, "max_hours": max_hours, "seed": options.seed},
    }
    Path(export).with_suffix(".report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report
