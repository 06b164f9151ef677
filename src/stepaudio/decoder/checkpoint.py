"""Typed configs as JSON beside safetensors weights: how the decoder's own (mini) models are stored."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file, save_file

from stepaudio.errors import CheckpointError, ModelNotFound
from stepaudio.models.checkpoint import load_exact

C = TypeVar("C")


def _coerce(kind, value):
    """A JSON/YAML value as the annotated type: nested dataclasses, tuples, and "1e-06" as a float."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return config_from_dict(kind, value)
    if origin is tuple:
        args = typing.get_args(kind)
        inner = args[0] if args else typing.Any
        return tuple(_coerce(inner, v) for v in value)
    if kind is float:
        return float(value)
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value}")
        return int(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true/false, got {value!r}")
        return value
    return value


def config_from_dict(cls: type[C], data: dict) -> C:
    """Build a (nested) config dataclass; unknown keys are an error, missing ones take the defaults."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CheckpointError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    try:
        return cls(**{name: _coerce(hints[name], value) for name, value in data.items()})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"bad {cls.__name__}: {error}") from error


def save_model(model: torch.nn.Module, config, directory: Path, name: str, dtype: torch.dtype | None = None) -> None:
    """Write `name.safetensors` (weights, floating ones as dtype if given) and `name.json` (config) into
    directory. Loading casts the weights to the model's dtype."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")


def load_model(model_cls, config_cls, directory: Path, name: str) -> torch.nn.Module:
    """Build model_cls(config) from `name.json` and load `name.safetensors` strictly, in eval mode."""
    weights, config_path = Path(directory) / f"{name}.safetensors", Path(directory) / f"{name}.json"
    for path in (weights, config_path):
        if not path.is_file():
            raise ModelNotFound(f"{path} not found: train it with `stepaudio train` or point to another model")
    try:
        config = config_from_dict(config_cls, json.loads(config_path.read_text()))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_path} is not valid JSON: {error}") from error
    model = model_cls(config)
    load_exact(model, load_file(str(weights)), str(weights))
    return model.eval()
