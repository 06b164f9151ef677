"""Weight-only 8-bit and 4-bit quantisation of our Transformer, with the kernels PyTorch ships.

Decoding one token reads every weight once, so its speed is set by bytes of weights more than by
arithmetic, and a model must fit in memory at all: Step-Audio-TTS-3B is 7 GB in bfloat16, Chat 265 GB.
`quantize(model, method)` swaps the projections (q/k/v, out, gate/up, down) and the vocabulary head
for layers that keep integer codes; embeddings, norms, activations and the KV cache stay bfloat16.

- int8: every projection and the head keep int8 codes and one bfloat16 scale per output row,
  w = q * s. CPU: `aten._weight_int8pack_mm`. CUDA: the same op (PyTorch has a CUDA kernel for it,
  a plain float32 one without tensor cores) for up to `DECODE_ROWS` rows, i.e. decoding; a longer
  prompt dequantises one layer at a time inside forward and multiplies in bfloat16 (cuBLAS), as
  does a PyTorch built without that kernel.
- int4: each row of a projection is cut into groups of 32 inputs; a group keeps 4-bit codes q, a
  scale s and an offset z, w = (q - 8) * s + z (PyTorch's packed-int4 layout). The head keeps int8
  (4 bits there visibly changes answers). CPU: `aten._weight_int4pack_mm_for_cpu`. CUDA:
  `aten._weight_int4pack_mm` (tinygemm, bfloat16 tensor cores, compute capability 8.0+).

The CUDA branches follow the ops' schemas and PyTorch's own tests; they were not run here (no GPU).

For SmolLM2 the GGUF weights are Q4_1 already (blocks of 32 with w = d * q + m), so min/max
requantisation recovers those codes; only the scales are rounded to bfloat16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.errors import OptionError
from stepaudio.lm.model import Transformer

QUANTIZATIONS = ("int8", "int4")
GROUP_SIZE = 32
GROUP_SIZES = (32, 64, 128, 256)  # what both int4 kernels accept
DECODE_ROWS = 16  # CUDA int8: at most this many rows use the int8 kernel, more dequantise the layer
# Rows are quantised a chunk at a time, the chunk's float temporaries ~64 MB: above glibc's largest mmap
# threshold (32 MB), so each is given back to the system when freed instead of growing the heap.
CHUNK_ELEMENTS = 2**24


def _has_kernel(op: str, device: torch.device) -> bool:
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device.type)
    return (
        key is not None
        and hasattr(torch.ops.aten, op)
        and torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{op}", key)
    )


def _chunks(weight: torch.Tensor) -> list[tuple[int, int]]:
    """Row ranges [start, end) of about CHUNK_ELEMENTS weights, a multiple of 32 rows (the CPU int4 layout
    packs blocks of 32 rows, so chunks pack one by one)."""
    out_features, in_features = weight.shape
    rows = max(32, CHUNK_ELEMENTS // in_features // 32 * 32)
    return [(start, min(start + rows, out_features)) for start in range(0, out_features, rows)]


def int4_supported(device: torch.device | str = "cpu") -> bool:
    """Whether the 4-bit CPU path is there (callers pick int4 by default with it; int4 on CUDA is
    asked for explicitly through `quantize`)."""
    return torch.device(device).type == "cpu" and _has_kernel("_weight_int4pack_mm_for_cpu", torch.device("cpu"))


class Int8Linear(nn.Module):
    """A bias-free linear layer with 8-bit weights and one scale per output row."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("codes", weight.new_empty(weight.shape, dtype=torch.int8))
        self.register_buffer("scales", weight.new_empty(self.out_features, dtype=torch.bfloat16))
        for start, end in _chunks(weight):
            rows = weight[start:end].detach().to(torch.float32, copy=True)
            scale = (torch.linalg.vector_norm(rows, float("inf"), dim=1) / 127).clamp(min=1e-8).to(torch.bfloat16)
            self.codes[start:end] = rows.div_(scale.float()[:, None]).round_().clamp_(-127, 127)  # q fits the
            self.scales[start:end] = scale  # rounded scale
        self.kernel = self.codes.device.type == "cpu" or _has_kernel("_weight_int8pack_mm", self.codes.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        if self.codes.is_cuda and (flat.shape[0] > DECODE_ROWS or not self.kernel):
            y = F.linear(flat, self.codes.to(torch.bfloat16) * self.scales[:, None])
        else:
            y = torch.ops.aten._weight_int8pack_mm(flat, self.codes, self.scales)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Int4Linear(nn.Module):
    """A bias-free linear layer with 4-bit weights in groups of `group_size` inputs."""

    def __init__(self, weight: torch.Tensor, group_size: int = GROUP_SIZE):
        super().__init__()
        out_features, in_features = weight.shape
        if in_features % group_size:
            raise ValueError(f"input size {in_features} is not a multiple of the group size {group_size}")
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        cuda = weight.is_cuda
        # tinygemm (CUDA) takes two codes a byte, the even input in the high half, and tiles them at the end.
        packed = weight.new_empty(out_features, in_features // 2, dtype=torch.uint8)
        groups_per_row = in_features // group_size
        scales_offsets = weight.new_empty(groups_per_row, out_features, 2, dtype=torch.bfloat16)  # kernels' layout
        for start, end in _chunks(weight):
            groups = weight[start:end].detach().to(torch.float32, copy=True).view(-1, groups_per_row, group_size)
            low, high = torch.aminmax(groups, dim=-1)  # [rows, in/g]
            step = ((high - low) / 15).clamp(min=1e-8)
            # The value of code 8, from the unrounded step: the rounding error of the step then grows
            # towards codes 0 and 15, not across all 15 steps from code 0.
            scale, offset = step.to(torch.bfloat16), (low + 8 * step).to(torch.bfloat16)
            q = groups.sub_(offset.float()[..., None]).div_(scale.float()[..., None]).add_(8).round_().clamp_(0, 15)
            q = q.to(torch.int32).view(end - start, in_features)
            if cuda:
                packed[start:end] = q[:, ::2] << 4 | q[:, 1::2]
            else:
                packed[start:end] = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
            scales_offsets[:, start:end] = torch.stack([scale, offset], -1).transpose(0, 1)
        if cuda:
            inner_k_tiles = next(t for t in (8, 4, 2) if in_features % (16 * t) == 0)
            packed = torch.ops.aten._convert_weight_to_int4pack(packed, inner_k_tiles)
        self.register_buffer("packed", packed)
        self.register_buffer("scales_offsets", scales_offsets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        mm = torch.ops.aten._weight_int4pack_mm if self.packed.is_cuda else torch.ops.aten._weight_int4pack_mm_for_cpu
        y = mm(flat, self.packed, self.group_size, self.scales_offsets)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}"


def _targets(model: Transformer) -> list[tuple[str, nn.Module, str]]:
    """(name, parent, attribute) of every layer quantize replaces; the head last."""
    found = []
    for index, block in enumerate(model.layers):
        for part, attribute in (("attn", "qkv"), ("attn", "out"), ("mlp", "gate_up"), ("mlp", "down")):
            found.append((f"layers.{index}.{part}.{attribute}", getattr(block, part), attribute))
    return [*found, ("lm_head", model, "lm_head")]


def _refusal(model: Transformer, method: str, group_size: int) -> str | None:
    """Why `quantize(model, method)` cannot be done, or None."""
    if method not in QUANTIZATIONS:
        return f"unknown quantization {method!r}: use one of {', '.join(QUANTIZATIONS)}, or none for bfloat16 weights"
    targets = _targets(model)
    if not all(type(getattr(parent, attribute)) is nn.Linear for _, parent, attribute in targets):
        return "the model is quantized already: load it again to quantize it another way"
    device = model.device
    if device.type not in ("cpu", "cuda", "meta"):
        return f"quantized weights run on CPU or CUDA, not {device.type}: run the model in bfloat16 there"
    if device.type == "cpu" and not _has_kernel("_weight_int8pack_mm", device):
        return "this PyTorch has no CPU kernel for int8 weights (aten._weight_int8pack_mm): run the model in bfloat16"
    if method == "int8":
        return None
    if device.type == "cpu" and not int4_supported(device):
        return "this PyTorch has no CPU kernel for int4 weights (aten._weight_int4pack_mm_for_cpu): use int8"
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        if not _has_kernel("_weight_int4pack_mm", device) or capability < (8, 0):
            return (
                f"int4 on CUDA needs PyTorch's tinygemm kernel (aten._weight_int4pack_mm) and compute capability "
                f"8.0 or newer; this GPU has {capability[0]}.{capability[1]}: use int8"
            )
    if group_size not in GROUP_SIZES:
        return f"int4 groups of {group_size} inputs are not supported: use one of {GROUP_SIZES}"
    rows = 8 if device.type == "cuda" else 16  # the packed layouts' row blocks
    for name, parent, attribute in targets[:-1]:  # the head keeps int8
        layer = getattr(parent, attribute)
        if layer.in_features % group_size or layer.out_features % rows:
            return (
                f"int4 needs every projection's input size to be a multiple of the group size {group_size} and its "
                f"output size a multiple of {rows}; {name} is {layer.in_features} -> {layer.out_features}: use int8"
            )
    return None


def quantize(model: Transformer, method: str, group_size: int = GROUP_SIZE) -> Transformer:
    """Quantize `model` in place (method: one of QUANTIZATIONS) and return it. Every layer is checked
    before any is changed: an impossible request raises `OptionError` (saying what to use instead) and
    leaves the model as it was. Each layer is quantised from the weights as loaded, then its float
    weights are dropped; the embeddings and norms are copied to bfloat16, even when they are bfloat16
    already: a tensor of safetensors' `load_file` is a view of the file's memory map, and the embedding
    alone would keep every page of the checkpoint read so far in memory. On the meta device `quantize`
    only sizes the result (CPU layouts): bench/quantization.py counts the full models' bytes so."""
    refusal = _refusal(model, method, group_size)
    if refusal:
        raise OptionError(refusal)
    for _, parent, attribute in _targets(model):
        weight = getattr(parent, attribute).weight
        int4 = method == "int4" and parent is not model
        setattr(parent, attribute, Int4Linear(weight, group_size) if int4 else Int8Linear(weight))
        del weight  # the float matrix goes now, not after the next layer is quantised
    for parameter in model.parameters():  # the embeddings and norms
        parameter.data = parameter.data.to(torch.bfloat16, copy=True)
    model._init_position()  # RoPE tables and ALiBi slopes stay float32
    return model


def quantize_int4(model: Transformer, group_size: int = GROUP_SIZE) -> Transformer:
    """4-bit projections and an 8-bit head on CPU (`quantize(model, "int4")`); kept for its callers,
    which ask `int4_supported` first."""
    if not int4_supported(model.device):
        raise OptionError("4-bit weights need PyTorch's int4 CPU kernel; run the model in bfloat16 instead")
    return quantize(model, "int4", group_size)
