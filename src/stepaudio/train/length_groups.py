"""Batches of examples of similar length, in random order, so that right-padding costs little.

Sequences of a corpus vary several-fold in length, and a batch is padded to its longest: drawn at
random, a batch of the TTS LM spends a large share of its positions on padding, and attention costs
the square of the padded length. The order stays random: each epoch shuffles the examples, sorts them
by length within pools of `pool` batches, and shuffles the batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


class LengthGroupedBatches(torch.utils.data.Sampler[list[int]]):
    """A DataLoader's batch_sampler, drawing its order from `generator` as a RandomSampler does (the
    training loop seeds it per epoch, the same on every rank). Under torchrun every rank takes every
    `world`-th batch, and all ranks the same number (the batches left over go to no rank that epoch)."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        generator: torch.Generator,
        rank: int = 0,
        world: int = 1,
        pool: int = 64,
    ):
        self.lengths, self.batch_size, self.generator = list(lengths), batch_size, generator
        self.rank, self.world, self.pool = rank, world, pool

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        size = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), size):
            pool = sorted(order[start : start + size], key=self.lengths.__getitem__)
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        yield from batches[: len(self) * self.world][self.rank :: self.world]

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size) // self.world
