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
    """A DataLoader's batch_sampler. Each epoch's order depends on (seed, epoch) only, so a resumed run
    goes on with the same orders. Under torchrun every rank takes every `world`-th batch, and all ranks
    the same number (the batches left over go to no rank that epoch)."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int = 0, rank: int = 0, world: int = 1, pool: int = 64
    ):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.rank, self.world, self.pool, self.epoch = rank, world, pool, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        size = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), size):
            pool = sorted(order[start : start + size], key=self.lengths.__getitem__)
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        yield from batches[: len(self) * self.world][self.rank :: self.world]

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size) // self.world
