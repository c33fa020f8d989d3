"""A MuseGPT model on disk: one safetensors file holding the weights, the model config and
the tokenizer (both as JSON in the file's metadata)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from musegpt.fileio import atomic_write
from musegpt.model.config import GPTConfig
from musegpt.model.gpt import GPT
from musegpt.tokenizer.base import Tokenizer, tokenizer_from_json

MODEL_FILE = "model.safetensors"
FORMAT = "musegpt-1"


class ModelFileError(ValueError):
    """A model file that is missing, corrupt or not a MuseGPT model."""


def resolve_model_file(path: str | Path) -> Path:
    """A model is named by its .safetensors file or by the folder that holds model.safetensors."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise ModelFileError(
            f"no MuseGPT model at {path}: expected a {MODEL_FILE} file or a folder containing one "
            "(train one with `musegpt train`)"
        )
    return path


def model_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Weights to save: the tied lm_head is the token embedding, so it is stored once."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    state.pop("lm_head.weight", None)
    return state


def save_model(
    path: str | Path,
    model: GPT,
    tokenizer: Tokenizer,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write `model` and `tokenizer` atomically; `path` is a file or a folder."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / MODEL_FILE
    atomic_write(path, model_file_writer(model, tokenizer, metadata))
    return path


def model_file_writer(
    model: GPT, tokenizer: Tokenizer, metadata: dict[str, str] | None = None
) -> Callable[[Path], None]:
    """A function that writes the model file of `model` (as it is now) to a path given."""
    meta = {
        "format": FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "tokenizer": tokenizer.to_json(),
        **(metadata or {}),
    }
    state = model_state_dict(model)

    def write(path: Path) -> None:
        save_file(state, str(path), metadata=meta)

    return write


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    file = resolve_model_file(path)
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"{file} is not a readable safetensors file: {err}") from err
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{file} is a safetensors file but not a MuseGPT model")
    return dict(meta)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer]:
    """Load a model saved by `save_model`, in eval mode."""
    file = resolve_model_file(path)
    meta = read_metadata(file)
    try:
        config = GPTConfig.from_dict(json.loads(meta["config"]))
        tokenizer = tokenizer_from_json(meta["tokenizer"])
        state = load_file(str(file))
    except (KeyError, ValueError, SafetensorError) as err:
        raise ModelFileError(f"{file} is damaged: {err}") from err
    model = GPT(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ModelFileError(
            f"{file} does not match its config: missing {missing or 'nothing'}, "
            f"unexpected {unexpected or 'nothing'}"
        )
    model.to(device)
    model.eval()
    return model, tokenizer
