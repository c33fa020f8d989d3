"""A GGUF file's metadata and tensor table, read without building its big arrays.

gguf's own `GGUFReader` makes a numpy view of every element of every metadata array: for
the default model's 262,144-token vocabulary that is 20-30 s before the first tensor is
known (measured). Reading its own few fields and its tensor table is all the callers here
need (a table's type and shape, an adapter's `general.type`, a tensor's bytes), so this
reader steps over arrays, reading only the lengths of their strings (well under a second).
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

# The fixed-size value types, as `struct` formats (GGUF is little-endian).
SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}  # fmt: skip
DEFAULT_ALIGNMENT = 32  # where `general.alignment` is not given


class GGUFFormatError(ValueError):
    """The file is not a GGUF file this reader understands (what is wrong, in words)."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    type: GGMLQuantizationType
    shape: tuple[int, ...]  # as GGUF stores it: the fastest-varying dimension first
    offset: int  # of its first byte in the file
    nbytes: int


@dataclass(frozen=True)
class GGUFIndex:
    path: Path
    fields: dict[str, int | float | bool | str]  # the scalar and string metadata
    arrays: dict[str, int]  # each metadata array's length (its items are not read)
    tensors: dict[str, TensorEntry]

    def data(self, name: str) -> np.ndarray:
        """The bytes of tensor `name`, mapped from the file (read as they are used)."""
        entry = self.tensors[name]
        return np.memmap(self.path, np.uint8, "r", entry.offset, (entry.nbytes,))


class _Cursor:
    """Little-endian values read one after another from a mapped file."""

    def __init__(self, buffer: mmap.mmap) -> None:
        self.buffer, self.at = buffer, 0

    def take(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.buffer):
            raise GGUFFormatError("the file ends inside its header")
        (value,) = struct.unpack_from(fmt, self.buffer, self.at)
        self.at += size
        return value  # type: ignore[no-any-return]

    def count(self) -> int:
        return int(self.take("<Q"))

    def string(self) -> str:
        size = self.count()
        if self.at + size > len(self.buffer):
            raise GGUFFormatError("the file ends inside its header")
        text = self.buffer[self.at : self.at + size].decode("utf-8", errors="replace")
        self.at += size
        return text

    def value_type(self) -> GGUFValueType:
        code = int(self.take("<I"))
        try:
            return GGUFValueType(code)
        except ValueError:
            raise GGUFFormatError(f"unknown metadata value type {code}") from None

    def skip_array(self, item: GGUFValueType, length: int) -> None:
        if item in SCALARS:
            self.at += length * struct.calcsize(SCALARS[item])
        elif item == GGUFValueType.STRING:
            for _ in range(length):
                self.at += 8 + int(struct.unpack_from("<Q", self.buffer, self.at)[0])
        else:  # arrays of arrays: each read in turn
            for _ in range(length):
                inner = self.value_type()
                self.skip_array(inner, self.count())
        if self.at > len(self.buffer):
            raise GGUFFormatError("the file ends inside its header")


def read_index(path: str | Path) -> GGUFIndex:
    """The metadata and tensor table of the GGUF file at `path` (versions 2 and 3)."""
    path = Path(path)
    with path.open("rb") as file:
        if path.stat().st_size < 24:
            raise GGUFFormatError(f"{path} is too short to be a GGUF file")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            return _read(path, buffer)


def _read(path: Path, buffer: mmap.mmap) -> GGUFIndex:
    if buffer[:4] != b"GGUF":
        raise GGUFFormatError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
    cursor = _Cursor(buffer)
    cursor.at = 4
    version = int(cursor.take("<I"))
    if version not in (2, 3):
        raise GGUFFormatError(f"{path} is GGUF version {version}; versions 2 and 3 are read")
    tensor_count, field_count = cursor.count(), cursor.count()
    fields: dict[str, int | float | bool | str] = {}
    arrays: dict[str, int] = {}
    for _ in range(field_count):
        key, kind = cursor.string(), cursor.value_type()
        if kind == GGUFValueType.ARRAY:
            item, length = cursor.value_type(), cursor.count()
            arrays[key] = length
            cursor.skip_array(item, length)
        elif kind == GGUFValueType.STRING:
            fields[key] = cursor.string()
        else:
            fields[key] = cursor.take(SCALARS[kind])
    entries: list[tuple[str, GGMLQuantizationType, tuple[int, ...], int]] = []
    for _ in range(tensor_count):
        name = cursor.string()
        dims = int(cursor.take("<I"))
        shape = tuple(cursor.count() for _ in range(dims))
        code = int(cursor.take("<I"))
        try:
            kind_of = GGMLQuantizationType(code)
        except ValueError:
            raise GGUFFormatError(f"tensor {name} has an unknown type {code}") from None
        entries.append((name, kind_of, shape, cursor.count()))
    alignment = int(fields.get("general.alignment", DEFAULT_ALIGNMENT))
    start = -(-cursor.at // alignment) * alignment  # the data begin at the next boundary
    tensors: dict[str, TensorEntry] = {}
    for name, kind_of, shape, offset in entries:
        block, size = GGML_QUANT_SIZES[kind_of]
        nbytes = math.prod(shape) // block * size
        if start + offset + nbytes > len(buffer):
            raise GGUFFormatError(f"tensor {name} runs past the end of {path}")
        tensors[name] = TensorEntry(name, kind_of, shape, start + offset, nbytes)
    return GGUFIndex(path, fields, arrays, tensors)
