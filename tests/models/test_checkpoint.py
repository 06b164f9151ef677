import pytest
import torch

from stepaudio.errors import CheckpointError
from stepaudio.models.checkpoint import load_exact


def test_load_exact_copies_and_casts():
    module = torch.nn.Linear(3, 2)
    weights = {"weight": torch.ones(2, 3, dtype=torch.float64), "bias": torch.zeros(2, dtype=torch.float16)}
    load_exact(module, weights, "w.pt")
    assert torch.equal(module.weight, torch.ones(2, 3)) and module.weight.dtype == torch.float32


def test_load_exact_names_every_difference():
    module = torch.nn.Linear(3, 2)
    shapes = r"wrong shape: weight \(3, 3\) != \(2, 3\)"
    with pytest.raises(CheckpointError, match=r"w\.pt .*missing: bias; unexpected: b; " + shapes):
        load_exact(module, {"weight": torch.ones(3, 3), "b": torch.zeros(2)}, "w.pt")
    many = {f"extra{i}": torch.zeros(1) for i in range(6)} | dict(torch.nn.Linear(3, 2).state_dict())
    with pytest.raises(CheckpointError, match=r"\(\+2 more\)"):
        load_exact(module, many, "w.pt")
