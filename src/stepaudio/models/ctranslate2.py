"""Reading a CTranslate2 `model.bin` with numpy alone (no ctranslate2 at run time).

The format (CTranslate2's `ModelSpec._serialize`, binary version 6), all little-endian:
uint32 version, string spec name, uint32 spec revision, uint32 variable count, then per variable
a string name, uint8 rank, rank x uint32 shape, uint8 dtype code, uint32 byte count and the raw
bytes; then uint32 alias count and (alias, target) string pairs. A string is a uint16 length
followed by that many bytes, the last one NUL.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stepaudio.errors import CheckpointError

# CTranslate2's DataType enum order (include/ctranslate2/types.h).
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, "bfloat16")
_SUPPORTED_VERSIONS = (5, 6)


@dataclass(frozen=True)
class CTranslate2Model:
    spec: str  # e.g. "WhisperSpec"
    revision: int
    variables: dict[str, np.ndarray]  # aliases resolved: each alias maps to its target's array

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.variables:
            raise CheckpointError(f"{self.spec} model.bin has no variable {name!r}")
        return self.variables[name]

    def scalar(self, name: str) -> int:
        return int(self[name].reshape(-1)[0])


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.offset = data, path, 0

    def take(self, size: int) -> memoryview:
        if self.offset + size > len(self.data):
            raise CheckpointError(f"{self.path} is truncated at byte {self.offset} (needs {size} more bytes)")
        view = memoryview(self.data)[self.offset : self.offset + size]
        self.offset += size
        return view

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (length,) = self.unpack("H")
        return bytes(self.take(length)).rstrip(b"\0").decode("utf-8")

    def array(self, name: str) -> np.ndarray:
        (rank,) = self.unpack("B")
        shape = self.unpack(f"{rank}I")
        code, size = self.unpack("BI")
        if code >= len(_DTYPES):
            raise CheckpointError(f"{self.path}: variable {name!r} has unknown dtype code {code}")
        raw = self.take(size)
        if _DTYPES[code] == "bfloat16":  # numpy has no bfloat16: widen the 16 bits to float32
            array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, _DTYPES[code])
        if array.size != int(np.prod(shape)):
            raise CheckpointError(f"{self.path}: variable {name!r} has {array.size} values for shape {shape}")
        return array.reshape(shape)


def read_ctranslate2_model(path: str | Path) -> CTranslate2Model:
    """All variables of a CTranslate2 model.bin, as read-only numpy arrays in their stored dtype."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; expected a CTranslate2 model.bin")
    reader = _Reader(path.read_bytes(), path)
    try:
        (version,) = reader.unpack("I")
        if version not in _SUPPORTED_VERSIONS:
            raise CheckpointError(
                f"{path} has CTranslate2 binary version {version}; this reader knows {_SUPPORTED_VERSIONS}"
            )
        spec = reader.string()
        (revision, count) = reader.unpack("II")
        variables = {}
        for _ in range(count):
            name = reader.string()
            variables[name] = reader.array(name)
        (alias_count,) = reader.unpack("I")
        for _ in range(alias_count):
            alias, target = reader.string(), reader.string()
            if target not in variables:
                raise CheckpointError(f"{path}: alias {alias!r} points to missing variable {target!r}")
            variables[alias] = variables[target]
    except (UnicodeDecodeError, struct.error) as error:
        raise CheckpointError(f"{path} is not a CTranslate2 model.bin ({error})") from None
    if reader.offset != len(reader.data):
        raise CheckpointError(f"{path} has {len(reader.data) - reader.offset} unexpected bytes after the alias table")
    return CTranslate2Model(spec, revision, variables)
