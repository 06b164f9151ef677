"""Loading converted weights into a module: all of them and nothing else, or a clear CheckpointError."""

from __future__ import annotations

import torch
from torch import nn

from stepaudio.errors import CheckpointError


def _names(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")


def load_exact(module: nn.Module, weights: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Copy `weights` into `module` (cast to its dtypes) after checking names and shapes match exactly."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [
        f"{name} {tuple(weights[name].shape)} != {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in weights and weights[name].shape != tensor.shape
    ]
    if missing or unexpected or wrong:
        problems = [
            f"{label}: {_names(names)}"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if names
        ]
        raise CheckpointError(f"{source} does not hold the weights this model needs ({'; '.join(problems)})")
    module.load_state_dict({name: weights[name].to(expected[name].dtype) for name in expected})
    return module
