"""Reproducible noise addressed by absolute position, so a stream and an offline pass draw the same.

The flow starts from Gaussian noise per mel frame and the vocoder's source adds noise per sample.
Streaming decodes overlapping windows; drawing each window's noise from a tape keyed by position
(not from a running generator) makes every frame see the same noise however the stream is chunked.
"""

from __future__ import annotations

import torch

BLOCK = 1024  # positions per independently seeded block


class NoiseTape:
    """Standard normal noise [channels, stop - start] for any position range, fixed by the seed."""

    def __init__(self, seed: int, channels: int):
        self.seed, self.channels = seed, channels
        self._blocks: dict[int, torch.Tensor] = {}

    def _block(self, index: int) -> torch.Tensor:
        if index not in self._blocks:
            if len(self._blocks) > 64:  # long streams: forget the oldest blocks
                self._blocks.pop(min(self._blocks))
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            self._blocks[index] = torch.randn(self.channels, BLOCK, generator=generator)
        return self._blocks[index]

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        if not 0 <= start <= stop:
            raise ValueError(f"bad noise range {start}..{stop}")
        if start == stop:
            return torch.zeros(self.channels, 0)
        blocks = [self._block(i) for i in range(start // BLOCK, (stop - 1) // BLOCK + 1)]
        offset = (start // BLOCK) * BLOCK
        return torch.cat(blocks, dim=1)[:, start - offset : stop - offset]
