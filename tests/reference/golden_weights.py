"""Deterministic tiny weights shared by `make_goldens.py` (next to the official code, in its own venv)
and the golden tests (next to ours): the same bytes on both sides without storing megabytes.

Every tensor is `offset + scale * u`, u uniform in [-1, 1) drawn from a counter-based hash
(splitmix64 of seed, tensor name and element index), computed with exact integer arithmetic in
NumPy: no random generator whose stream could change between library versions. A golden records
each tensor's name, shape, scale and offset (`spec`) and a SHA-256 of all the values, and the
tests check that digest before comparing anything, so a drifting generator fails loudly.

Needs only numpy (and torch for `to_torch`); imports nothing of stepaudio or of the official code.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return x ^ (x >> np.uint64(31))


def _key(seed: int, name: str) -> np.uint64:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.uint64(int.from_bytes(digest[:8], "little"))


def uniform(seed: int, name: str, shape) -> np.ndarray:
    """float32 values uniform in [-1, 1), fixed by (seed, name, shape) on any machine."""
    count = int(np.prod(shape, dtype=np.int64))
    with np.errstate(over="ignore"):
        counters = (np.arange(count, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03) + _key(seed, name)) & _MASK
    bits = _splitmix64(counters) >> np.uint64(11)  # 53 random bits
    values = bits.astype(np.float64) * (2.0**-52) - 1.0  # exact: [-1, 1)
    return values.astype(np.float32).reshape(shape)


def make_state(seed: int, spec: list) -> dict[str, np.ndarray]:
    """spec: [name, shape, scale, offset] or [name, shape, scale, offset, rows] per tensor -> {name: float32
    array}; rows: [row, other tensor's name, its row, factor] entries that set a row to a multiple of a row
    of another tensor (after all tensors are drawn)."""
    state = {
        entry[0]: (np.float32(entry[3]) + np.float32(entry[2]) * uniform(seed, entry[0], tuple(entry[1]))).astype(
            np.float32
        )
        for entry in spec
    }
    for entry in spec:
        for row, source, source_row, factor in entry[4] if len(entry) > 4 else ():
            state[entry[0]][row] = np.float32(factor) * state[source][source_row]
    return state


def digest(state: dict[str, np.ndarray]) -> str:
    """SHA-256 over names, shapes and float32 bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        value = np.ascontiguousarray(state[name], dtype=np.float32)
        h.update(json.dumps([name, list(value.shape)]).encode())
        h.update(value.tobytes())
    return h.hexdigest()


def to_torch(state: dict[str, np.ndarray]):
    import torch

    return {name: torch.from_numpy(value.copy()) for name, value in state.items()}
