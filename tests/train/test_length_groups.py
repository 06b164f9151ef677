"""Batches by length: every example once per epoch, little padding, random and reproducible orders,
ranks that share the batches out evenly, and the training loop taking them from a dataset's `lengths`."""

import json

import pytest
import torch

from stepaudio.train.length_groups import LengthGroupedBatches
from stepaudio.train.loop import TrainOptions, train


def padded_share(batches, lengths) -> float:
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return 1 - sum(lengths) / padded


def test_each_epoch_holds_every_example_once_in_batches_of_similar_lengths():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(100, 600, (1000,), generator=generator).tolist()
    sampler = LengthGroupedBatches(lengths, 16, torch.Generator().manual_seed(3), pool=8)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 63 and sorted(i for b in batches for i in b) == list(range(1000))
    drawn = [list(range(k, 1000, 63)) for k in range(63)]  # batches blind to length
    assert padded_share(batches, lengths) < 0.1 and padded_share(drawn, lengths) > 0.3
    assert list(LengthGroupedBatches(lengths, 16, torch.Generator().manual_seed(3), pool=8)) == batches
    assert list(sampler) != batches  # the generator moved on: the next epoch's order
    sizes = [max(lengths[i] for i in batch) for batch in batches]
    assert sizes != sorted(sizes) and sizes != sorted(sizes, reverse=True)  # not longest-first or last


@pytest.mark.parametrize("examples", [64, 70])
def test_ranks_take_the_same_number_of_distinct_batches(examples):
    lengths = list(range(examples))
    ranks = [list(LengthGroupedBatches(lengths, 8, torch.Generator().manual_seed(1), r, 2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(LengthGroupedBatches(lengths, 8, torch.Generator(), world=2)) == 4
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}


class Sized(torch.utils.data.Dataset):
    def __init__(self, lengths):
        self.lengths = lengths

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, index):
        return torch.ones(self.lengths[index])


class PaddedWidth(torch.nn.Module):
    """Logs the padded width of every batch (its loss is a parameter's square, so training runs)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, batch):
        return (self.weight**2).sum(), {"width": float(batch.shape[1])}


def test_the_loop_batches_a_dataset_with_lengths_by_length(tmp_path):
    lengths = [1, 50] * 32
    collate = lambda rows: torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)  # noqa: E731
    options = TrainOptions(out=tmp_path, steps=8, batch_size=8, log_every=1, device="cpu")
    train(PaddedWidth(), Sized(lengths), collate, options, lambda: None)
    widths = [json.loads(line)["width"] for line in (tmp_path / "log.jsonl").open()]
    assert sorted(set(widths)) == [1.0, 50.0]  # short rows together: never padded to the long ones


def test_random_batching_ignores_the_lengths(tmp_path):
    collate = lambda rows: torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)  # noqa: E731
    options = TrainOptions(out=tmp_path, steps=8, batch_size=8, log_every=1, device="cpu", batching="random")
    train(PaddedWidth(), Sized([1, 50] * 32), collate, options, lambda: None)
    assert {json.loads(line)["width"] for line in (tmp_path / "log.jsonl").open()} == {50.0}
