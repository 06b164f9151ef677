"""Where models run: one rule for every command, so `--device auto` means the same everywhere.

torch is imported on first use: the CLI registers its options from here before any model loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stepaudio.errors import OptionError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str | None = "auto") -> torch.device:
    """'auto' (or None): a GPU when torch sees one, else the CPU; 'cpu'; 'cuda' (an error without a GPU)."""
    import torch

    name = name or "auto"
    if name not in DEVICES:
        raise OptionError(f"device must be auto, cpu or cuda, not {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise OptionError("device cuda asked for, but torch sees no GPU (this torch build or this machine has none)")
    return torch.device(name)


def inference_dtype(device: torch.device) -> torch.dtype:
    """Weights of the big LMs: bfloat16 on a GPU (half the memory, native speed), float32 on a CPU."""
    import torch

    return torch.bfloat16 if device.type == "cuda" else torch.float32
