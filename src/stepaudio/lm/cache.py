"""The static key/value cache of one generation session, preallocated once.

Keys and values of every layer live in two tensors [layers, batch, kv_heads, max_len, head_dim];
a forward pass writes its new positions by index and attends to the filled prefix, so nothing is
reallocated per token. Rows of a batch share positions: shorter prompts are left-padded and their
padding slots are marked invalid (`valid`), which the model turns into an attention mask. Dropping
the end of the cache (`truncate`) is O(1): the slots are simply overwritten later.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ):
        shape = (num_layers, batch_size, num_kv_heads, max_len, head_dim)
        # Uninitialised: a slot is always written before it is read, and untouched pages cost no RAM.
        self.keys = torch.empty(shape, dtype=dtype, device=device)
        self.values = torch.empty(shape, dtype=dtype, device=device)
        self.valid = torch.ones(batch_size, max_len, dtype=torch.bool, device=device)  # False = padding slot
        self.length = 0  # filled positions, the same for every row
        self._padding = False  # any invalid slot below `length`

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    @property
    def max_len(self) -> int:
        return self.keys.shape[3]

    @property
    def has_padding(self) -> bool:
        return bool(self._padding)

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, Hkv, T, D] at positions start..start+T; return all keys and values so far."""
        end = start + k.shape[2]
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def mark_valid(self, start: int, valid: torch.Tensor) -> None:
        """Record which of the slots start..start+T [B, T] hold real tokens (False = padding)."""
        self.valid[:, start : start + valid.shape[1]] = valid.to(self.valid.device)
        self._padding = not bool(self.valid[:, : start + valid.shape[1]].all())

    def truncate(self, length: int) -> None:
        """Forget every position from `length` on."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} positions to {length}")
        self.length = length
        self.valid[:, length:] = True
        self._padding = not bool(self.valid[:, :length].all())
