"""A peft LoRA folder -> a GGUF LoRA file, by llama.cpp's own `convert_lora_to_gguf.py`.

The converter ships in llama-cpp-python's source distribution (with the `conversion` and
`gguf-py` packages it imports), not in its wheel; the files it needs are taken from that
source archive once, for the installed version, into the cache: from a copy placed by hand
at <cache>/llama-cpp-python-VERSION.tar.gz, else fetched with `pip download`. It runs
against the base model's local config (the dequantised folder), so it never asks the
Hugging Face hub for anything.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from musegpt.external import ToolError, ToolLimits, run_tool
from musegpt.paths import cache_dir, cache_lock

SCRIPT = "convert_lora_to_gguf.py"
NEEDED = (SCRIPT, "convert_hf_to_gguf.py", "conversion/", "gguf-py/")
DOWNLOAD_LIMITS = ToolLimits(timeout_s=1800.0, max_output_bytes=500_000_000)
CONVERT_LIMITS = ToolLimits(timeout_s=1800.0, max_output_bytes=500_000_000)


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "llama-cpp-python is not installed: pip install llama-cpp-python"
        ) from None


def converter_folder() -> Path:
    """The cached folder holding llama.cpp's LoRA converter, unpacked on first use."""
    version = llama_cpp_version()
    target = cache_dir() / "llama-cpp-convert" / version
    if (target / SCRIPT).is_file():
        return target
    archive = cache_dir() / f"llama-cpp-python-{version}.tar.gz"
    with (
        cache_lock(target),
        tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp,
    ):
        if (target / SCRIPT).is_file():  # unpacked by another process meanwhile
            return target
        if not archive.is_file():
            archive = _download_source(version, Path(tmp))
        unpacked = Path(tmp) / "unpacked"
        _unpack_converter(archive, unpacked)
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)
    return target


def _download_source(version: str, folder: Path) -> Path:
    spec = f"llama-cpp-python=={version}"
    command = [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--no-binary",
               ":all:", "-d", "."]  # fmt: skip
    try:
        with run_tool(command, DOWNLOAD_LIMITS) as out:
            archives = sorted(out.glob("llama_cpp_python-*.tar.gz"))
            if not archives:
                raise ToolError("pip wrote no source archive")
            target = folder / archives[0].name
            shutil.move(archives[0], target)
            return target
    except ToolError as err:
        raise OSError(
            f"converting an adapter to GGUF needs llama.cpp's converter from the source of "
            f"{spec}, which could not be fetched ({err}); download it elsewhere "
            f"(`pip download {spec} --no-deps --no-binary :all:`) and put the .tar.gz at "
            f"{cache_dir() / f'llama-cpp-python-{version}.tar.gz'}"
        ) from None


def _unpack_converter(archive: Path, dest: Path) -> None:
    marker = "/vendor/llama.cpp/"
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            _, found, inside = member.name.partition(marker)
            if not found or not member.isfile() or not inside.startswith(NEEDED):
                continue
            if ".." in Path(inside).parts:
                continue  # never outside the destination
            path = dest / inside
            path.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is not None:
                path.write_bytes(source.read())
    if not (dest / SCRIPT).is_file():
        raise OSError(f"{archive} holds no vendor/llama.cpp/{SCRIPT}")


def convert_lora(adapter: Path, base: Path, out_file: Path) -> Path:
    """Write the peft adapter in folder `adapter` (for the Hugging Face model in folder
    `base`) as the GGUF LoRA `out_file` (float16)."""
    folder = converter_folder()
    command = ["/usr/bin/env", "HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1",
               sys.executable, str(folder / SCRIPT), "--base", str(base.resolve()),
               "--outtype", "f16", "--outfile", "adapter.gguf",
               str(adapter.resolve())]  # fmt: skip
    try:
        with run_tool(command, CONVERT_LIMITS) as workdir:
            out_file.parent.mkdir(parents=True, exist_ok=True)
            partial = out_file.with_name(out_file.name + ".part")
            shutil.move(workdir / "adapter.gguf", partial)
            os.replace(partial, out_file)
    except ToolError as err:
        raise OSError(f"llama.cpp's {SCRIPT} could not convert {adapter}: {err}") from None
    return out_file
