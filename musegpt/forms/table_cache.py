"""Tables the form constraints build once and keep on disk: per vocabulary (what each of a
tokenizer's tokens does to verse) and per dictionary (the CMU pronouncing dictionary's
words, syllables and rhymes).

A table is a set of numpy arrays in one `.npz` file under `cache_dir()/forms/`, named by a
hash of what it was built from: the tokenizer's identity (its model file's path, size and
modification time, or its own definition) or the dictionary's version. The file repeats
that identity and the format version inside; a file that cannot be read, or that names
something else, is rebuilt and rewritten (atomically), never trusted and never a crash.
Files are read without pickle (`allow_pickle=False`), so a cache file cannot run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from musegpt.paths import cache_dir
from musegpt.tokenizer.base import Tokenizer

FORMAT = 1  # bump when a table's layout or meaning changes
Arrays = dict[str, np.ndarray[Any, Any]]
_IDENTITY_KEY = "__identity__"
_FORMAT_KEY = "__format__"
SLOW_BUILD_S = 2.0  # a build taking longer says so, once finished


def file_stamp(path: str | Path) -> list[Any]:
    """What identifies a file's content cheaply: resolved path, size and modification time
    (a folder: the same for each file directly in it)."""
    file = Path(path).expanduser().resolve()
    if file.is_dir():
        return [file_stamp(child) for child in sorted(file.iterdir()) if child.is_file()]
    stat = file.stat()
    return [str(file), stat.st_size, stat.st_mtime_ns]


def hashed(*parts: Any) -> str:
    """An identity made of these parts (anything JSON can write)."""
    text = json.dumps([FORMAT, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_identity(tokenizer: Tokenizer) -> str:
    """A hash that changes whenever the tokenizer's vocabulary may have: a backend's
    tokenizer (llama.cpp, transformers) by its model file's stamp, any other by its own
    definition (`to_dict`)."""
    description: dict[str, Any] = {"kind": type(tokenizer).__name__}
    source = getattr(tokenizer, "source", None)
    if isinstance(source, str) and source and Path(source).expanduser().exists():
        description["source"] = file_stamp(source)
        description["vocab"] = tokenizer.vocab_size
    else:
        description["definition"] = tokenizer.to_dict()
    return hashed(description)


def table_path(name: str, identity: str) -> Path:
    return cache_dir() / "forms" / f"{name}-{identity[:24]}.npz"


def _read(path: Path, identity: str) -> Arrays | None:
    """The arrays in `path` when it holds a readable table built from `identity`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    stamp, version = arrays.pop(_IDENTITY_KEY, None), arrays.pop(_FORMAT_KEY, None)
    if stamp is None or version is None or str(stamp) != identity or int(version) != FORMAT:
        return None
    return arrays


def _write(path: Path, identity: str, arrays: Arrays) -> None:
    """Write atomically (a reader never sees half a file); a cache that cannot be written
    (read-only home, full disk) only costs a rebuild next time."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            stamps = {_IDENTITY_KEY: np.array(identity), _FORMAT_KEY: np.array(FORMAT)}
            with os.fdopen(handle, "wb") as f:
                everything: dict[str, Any] = {**arrays, **stamps}
                np.savez(f, **everything)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def cached_table(name: str, identity: str, build: Callable[[], Arrays]) -> Arrays:
    """The table `name` built from `identity`: read from the cache, or built and saved."""
    path = table_path(name, identity)
    found = _read(path, identity)
    if found is not None:
        return found
    start = time.perf_counter()
    arrays = build()
    _write(path, identity, arrays)
    took = time.perf_counter() - start
    if took > SLOW_BUILD_S:
        print(
            f"musegpt: built the {name} table in {took:.0f} s (kept in {path.parent})",
            file=sys.stderr,
        )
    return arrays


def pack_lines(values: list[str]) -> np.ndarray[Any, Any]:
    """Strings without newlines as one UTF-8 array (a few MB of words loads in
    milliseconds, where a fixed-width string array would pad every entry)."""
    if any("\n" in v for v in values):
        raise ValueError("pack_lines takes strings without newlines")
    return np.frombuffer("\n".join(values).encode("utf-8"), dtype=np.uint8)


def unpack_lines(packed: np.ndarray[Any, Any], count: int) -> list[str]:
    return packed.tobytes().decode("utf-8").split("\n") if count else []


def pack_bytes(values: list[bytes]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Byte strings as (one array of all their bytes, their lengths)."""
    blob = np.frombuffer(b"".join(values), dtype=np.uint8)
    return blob, np.array([len(v) for v in values], dtype=np.int32)


def unpack_bytes(blob: np.ndarray[Any, Any], lengths: np.ndarray[Any, Any]) -> list[bytes]:
    data = blob.tobytes()
    ends = np.cumsum(lengths, dtype=np.int64).tolist()
    starts = [0, *ends[:-1]]
    return [data[a:b] for a, b in zip(starts, ends, strict=True)]
