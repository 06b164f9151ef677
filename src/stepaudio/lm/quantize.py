"""Weight-only 4-bit quantisation for fast CPU decoding.

Decoding one token reads every weight once, so on a CPU its speed is set by bytes of weights, not
by arithmetic: 4-bit weights read 8x fewer bytes than float32. Each row of a weight matrix is cut
into groups of 32 inputs; a group stores 4-bit codes q and a scale s and offset z, with
w = (q - 8) * s + z, and PyTorch's packed-int4 CPU kernel multiplies in bfloat16. The vocabulary
head keeps 8 bits per weight (one scale per row).

For SmolLM2 the GGUF weights are Q4_1 already (blocks of 32 with w = d * q + m), so min/max
requantisation recovers those codes; only the scales are rounded to bfloat16.
"""

from __future__ import annotations

import torch
from torch import nn

from stepaudio.lm.model import Transformer

GROUP_SIZE = 32


def int4_supported(device: torch.device | str = "cpu") -> bool:
    return torch.device(device).type == "cpu" and hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu")


class Int4Linear(nn.Module):
    """A bias-free linear layer with 4-bit weights in groups of `group_size` inputs."""

    def __init__(self, weight: torch.Tensor, group_size: int = GROUP_SIZE):
        super().__init__()
        out_features, in_features = weight.shape
        if in_features % group_size:
            raise ValueError(f"input size {in_features} is not a multiple of the group size {group_size}")
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups = weight.detach().float().reshape(out_features, in_features // group_size, group_size)
        low, high = groups.amin(-1), groups.amax(-1)  # [out, in/g]
        scale = ((high - low) / 15).clamp(min=1e-8)
        codes = ((groups - low[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.reshape(out_features, in_features), 1)
        self.register_buffer("packed", packed)
        # The kernel's layout: [in/g, out, (scale, offset)], offset of code 8.
        scales_offsets = torch.stack([scale, low + 8 * scale], -1).transpose(0, 1).contiguous()
        self.register_buffer("scales_offsets", scales_offsets.to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group_size, self.scales_offsets)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}"


class Int8Linear(nn.Module):
    """A bias-free linear layer with 8-bit weights and one scale per output row."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        scale = (weight.detach().float().abs().amax(1) / 127).clamp(min=1e-8)
        self.register_buffer("codes", (weight.detach().float() / scale[:, None]).round().to(torch.int8))
        self.register_buffer("scales", scale.to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch.ops.aten._weight_int8pack_mm(flat, self.codes, self.scales)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def quantize_int4(model: Transformer, group_size: int = GROUP_SIZE) -> Transformer:
    """Swap every projection for an `Int4Linear` and the vocabulary head for an `Int8Linear` (4 bits
    there visibly changes answers), in place; activations, norms, embeddings and the KV cache run in
    bfloat16."""
    if not int4_supported(model.device):
        raise ValueError("4-bit weights need PyTorch's int4 CPU kernel; run the model in bfloat16 instead")
    model.to(torch.bfloat16)
    model._init_position()  # RoPE tables and ALiBi slopes stay float32
    for block in model.layers:
        for parent, name in ((block.attn, "qkv"), (block.attn, "out"), (block.mlp, "gate_up"), (block.mlp, "down")):
            setattr(parent, name, Int4Linear(getattr(parent, name).weight, group_size))
    model.lm_head = Int8Linear(model.lm_head.weight)
    return model
