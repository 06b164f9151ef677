"""k-means codebooks for the mini tokenizers: Lloyd's algorithm in torch, chunked so that a few
million frames and 4096 centroids fit in memory on a CPU machine.

Initialisation is k-means++ on a random subsample (good seeds matter more than iterations here),
and a centroid that loses all its points is re-seeded on the point farthest from its centroid, so a
trained codebook has no dead codes unless the data has fewer distinct points than codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from stepaudio.tokenizer.codebook import nearest


@dataclass(frozen=True)
class CodebookStats:
    """How well a codebook is used on a set of features."""

    inertia: float  # mean squared distance of a point to its centroid
    perplexity: float  # exp(entropy) of the code distribution; equals the number of codes if all are used evenly
    dead_codes: int  # codes no point was assigned to

    def __str__(self) -> str:
        return f"inertia {self.inertia:.4f}, perplexity {self.perplexity:.1f}, dead codes {self.dead_codes}"


def codebook_stats(features: torch.Tensor, centroids: torch.Tensor) -> CodebookStats:
    codes, dists = nearest(features, centroids)
    counts = torch.bincount(codes, minlength=len(centroids)).double()
    p = counts[counts > 0] / counts.sum()
    return CodebookStats(
        inertia=float(dists.mean()),
        perplexity=float(torch.exp(-(p * p.log()).sum())),
        dead_codes=int((counts == 0).sum()),
    )


def kmeans_plus_plus(features: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centroid is drawn with probability proportional to D(x)^2."""
    sq_norms = (features * features).sum(dim=1)

    def sq_distances(centroid: torch.Tensor) -> torch.Tensor:
        return (sq_norms - 2 * (features @ centroid) + centroid @ centroid).clamp_min(0)

    centroids = torch.empty(k, features.shape[1])
    centroids[0] = features[torch.randint(len(features), (1,), generator=generator)]
    closest = sq_distances(centroids[0])
    for i in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than centroids: repeat points
            pick = torch.randint(len(features), (1,), generator=generator)
        else:
            pick = torch.multinomial(closest / total, 1, generator=generator)
        centroids[i] = features[pick]
        torch.minimum(closest, sq_distances(centroids[i]), out=closest)
    return centroids


def train_kmeans(
    features: torch.Tensor,
    k: int,
    *,
    iterations: int = 30,
    seed_sample: int = 20_000,
    tolerance: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Fit k centroids to features [N, D] (float32); returns centroids [k, D]. Deterministic for a seed."""
    if features.ndim != 2 or len(features) < k:
        raise ValueError(f"need a [N, D] matrix with N >= k={k}, got shape {tuple(features.shape)}")
    features = features.float()
    generator = torch.Generator().manual_seed(seed)
    sample = features[torch.randperm(len(features), generator=generator)[:seed_sample]]
    centroids = kmeans_plus_plus(sample, k, generator)
    previous = math.inf
    bar = tqdm(range(iterations), desc=f"k-means k={k}", disable=not progress)
    for _ in bar:
        codes, dists = nearest(features, centroids)
        counts = torch.bincount(codes, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, codes, features)
        alive = counts > 0
        centroids[alive] = sums[alive] / counts[alive, None].float()
        dead = torch.nonzero(~alive).flatten()
        if len(dead):  # re-seed on the worst-served points
            centroids[dead] = features[dists.topk(len(dead)).indices]
        inertia = float(dists.mean())
        bar.set_postfix(inertia=f"{inertia:.4f}", dead=len(dead))
        if len(dead) == 0 and previous - inertia <= tolerance * previous:
            break
        previous = inertia
    return centroids
