"""The GGUF base model as a Hugging Face folder, dequantised once and cached.

`transformers` reads Gemma 3 GGUF files (with the `gguf` package) but takes minutes to
dequantise and parse the tokenizer; the result is saved as a plain folder (config.json,
model.safetensors, tokenizer files) under the cache, so training starts in seconds after the
first time, and llama.cpp's LoRA converter finds the local config it needs there (so it never
asks the Hugging Face hub for one).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from musegpt.engines.base import EngineError
from musegpt.paths import cache_dir, cache_lock

COMPLETE = "complete"  # written last: a folder without it is a half-written one


def base_folder(gguf_file: Path) -> Path:
    """Where the dequantised copy of `gguf_file` lives (keyed by its name and size, so a
    different file of the same name gets its own)."""
    return cache_dir() / "adapters" / "base" / f"{gguf_file.stem}-{gguf_file.stat().st_size}"


def dequantised_base(gguf_file: Path, verbose: bool = True) -> Path:
    """The cached Hugging Face folder of `gguf_file`, made on first use."""
    folder = base_folder(gguf_file)
    if (folder / COMPLETE).is_file():
        return folder
    with cache_lock(folder):
        if not (folder / COMPLETE).is_file():  # else made by another process meanwhile
            _dequantise(gguf_file, folder, verbose)
    return folder


def _dequantise(gguf_file: Path, folder: Path, verbose: bool) -> None:
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF files)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise EngineError(
            f"training an adapter needs transformers and gguf ({err}): pip install gguf"
        ) from err
    if verbose:
        print(f"Dequantising {gguf_file.name} for training (first use, a few minutes)…",
              file=sys.stderr)  # fmt: skip
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".making-") as tmp, one_parse():
        work = Path(tmp) / "model"
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                str(gguf_file.parent), gguf_file=gguf_file.name
            )
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32
            )
        except (OSError, ValueError, KeyError) as err:
            raise EngineError(f"transformers could not read {gguf_file}: {err}") from err
        # The weights are plain floats now: save them as such, not as a "GGUF-quantised" model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(work))
        tokenizer.save_pretrained(str(work))
        (work / COMPLETE).write_text(str(gguf_file) + "\n", encoding="utf-8")
        if folder.exists():  # a damaged earlier attempt
            shutil.rmtree(folder)
        os.replace(work, folder)


@contextmanager
def one_parse() -> Iterator[None]:
    """While held, `gguf.GGUFReader(path)` parses each file once. transformers parses the
    GGUF afresh for the tokenizer, the config and the weights, and each parse of Gemma's
    262,144-token vocabulary takes 20-40 s in Python: two of three are saved."""
    import gguf

    original = gguf.GGUFReader
    parsed: dict[str, Any] = {}

    def reader(path: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # another mode ("r+"): not the read-only parse shared here
            return original(path, *args, **kwargs)
        key = str(Path(path).resolve())
        if key not in parsed:
            parsed[key] = original(path)
        return parsed[key]

    gguf.GGUFReader = reader  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        gguf.GGUFReader = original  # type: ignore[misc]


def load_base(gguf_file: Path, verbose: bool = True) -> tuple[Any, Any]:
    """(model, tokenizer) of the dequantised base, in float32 on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = dequantised_base(gguf_file, verbose)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    return model, tokenizer
