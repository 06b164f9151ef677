"""Nearest-codeword lookup, shared by the mini tokenizers at run time and by k-means training."""

from __future__ import annotations

import torch

_CHUNK = 16384  # rows per distance computation: 16384 x 4096 floats = 256 MiB at most


def nearest(features: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centroid (Euclidean) for each row, and the squared distance: ([N], [N])."""
    sq_norms = (centroids * centroids).sum(dim=1)
    codes, dists = [], []
    for chunk in features.split(_CHUNK):
        d = (chunk * chunk).sum(dim=1, keepdim=True) - 2 * chunk @ centroids.T + sq_norms
        best, index = d.min(dim=1)
        codes.append(index)
        dists.append(best.clamp_min(0))
    return torch.cat(codes), torch.cat(dists)
