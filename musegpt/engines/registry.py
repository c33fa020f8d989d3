"""The model registry: names for models, and opening any model with the right backend.

`musegpt models` lists the embedded default, the models shipped inside the package, MuseGPT
run folders under ./runs, and whatever the user registered with `musegpt models add NAME
PATH` (kept in models.json in the config folder). A model is also named by its path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from musegpt.engines.base import Engine, EngineError
from musegpt.engines.default_model import DEFAULT_MODEL, FAST_MODEL, default_model_path
from musegpt.fileio import atomic_write_text
from musegpt.generation.decoder import OverflowPolicy
from musegpt.paths import config_dir

Backend = Literal["musegpt", "llama.cpp", "transformers", "remote"]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
PACKAGED = Path(__file__).resolve().parent.parent / "weights"  # models shipped in the package


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: str  # "" for the default model until it is assembled
    backend: Backend
    source: Literal["default", "packaged", "run", "registered"]


def detect_backend(path: Path) -> Backend:
    """Which backend reads the model at `path`, or a clear error saying what was expected."""
    if not path.exists():
        raise EngineError(f"no model at {path}: the path does not exist")
    if path.is_file() and path.suffix == ".gguf":
        return "llama.cpp"
    if path.is_dir() and (path / "config.json").is_file():
        return "transformers"
    if (path.is_file() and path.suffix == ".safetensors") or (
        path.is_dir() and (path / "model.safetensors").is_file()
    ):
        return "musegpt"
    raise EngineError(
        f"{path} is not a model MuseGPT can read: expected a .gguf file, a MuseGPT model "
        "(model.safetensors or its folder) or a Hugging Face folder with config.json"
    )


def registry_file() -> Path:
    return config_dir() / "models.json"


def _registered() -> dict[str, str]:
    file = registry_file()
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise EngineError(
            f"the model registry {file} is unreadable ({err}); fix or delete it"
        ) from None
    return {str(k): str(v) for k, v in data.get("models", {}).items()}


def _save_registered(models: dict[str, str]) -> None:
    text = json.dumps({"models": dict(sorted(models.items()))}, indent=2, ensure_ascii=False)
    atomic_write_text(registry_file(), text + "\n")


def list_models(runs: Path = Path("runs")) -> list[ModelEntry]:
    entries = [ModelEntry(name, "", "llama.cpp", "default") for name in (DEFAULT_MODEL, FAST_MODEL)]
    if PACKAGED.is_dir():
        for file in sorted(PACKAGED.glob("*.safetensors")):
            entries.append(ModelEntry(file.stem, str(file), "musegpt", "packaged"))
    if runs.is_dir():
        for file in sorted(runs.glob("*/best/model.safetensors")):
            entries.append(
                ModelEntry(f"runs/{file.parent.parent.name}", str(file.parent), "musegpt", "run")
            )
    for name, path in _registered().items():
        try:
            backend = detect_backend(Path(path))
        except EngineError:
            backend = "musegpt"  # listed anyway; opening it gives the clear error
        entries.append(ModelEntry(name, path, backend, "registered"))
    from musegpt.engines.remote import remote_models  # another server's model, by URL

    for name, spec in remote_models().items():
        entries.append(ModelEntry(name, spec.url, "remote", "registered"))
    from musegpt.adapters.registry import adapter_models  # a GGUF base with a LoRA

    for name, adapter in adapter_models().items():
        entries.append(ModelEntry(name, adapter.adapter, "llama.cpp", adapter.source))
    return entries


def add_model(name: str, path: str | Path) -> ModelEntry:
    """Register `path` under `name` (the path is checked and stored absolute)."""
    check_name(name)
    resolved = Path(path).expanduser().resolve()
    backend = detect_backend(resolved)
    models = _registered()
    models[name] = str(resolved)
    _save_registered(models)
    return ModelEntry(name, str(resolved), backend, "registered")


def check_name(name: str) -> None:
    """A clear error when `name` cannot name a registered model."""
    if not NAME.match(name):
        raise EngineError(
            f"model name {name!r} is not allowed: use letters, digits, '.', '_', ':' or '-'"
        )
    if name in (DEFAULT_MODEL, FAST_MODEL):
        raise EngineError(f"{name!r} is a built-in default model; pick another name")


def add_remote_model(
    name: str,
    url: str,
    remote_model: str,
    api_key_env: str | None = None,
    context_length: int | None = None,
) -> ModelEntry:
    """Register a model served by another server's OpenAI API (musegpt/engines/remote.py)."""
    from musegpt.engines.remote import add_remote

    check_name(name)
    if name in _registered():
        raise EngineError(f"{name!r} already names a model path; remove it first or pick another")
    spec = add_remote(name, url, remote_model, api_key_env, context_length)
    return ModelEntry(name, spec.url, "remote", "registered")


def remove_model(name: str) -> None:
    from musegpt.adapters.registry import remove_adapter
    from musegpt.engines.remote import remove_remote

    models = _registered()
    if name not in models and (remove_remote(name) or remove_adapter(name)):
        return
    if name not in models:
        raise EngineError(f"no registered model named {name!r} (see `musegpt models`)")
    del models[name]
    _save_registered(models)


def find_model(model: str | Path | None) -> ModelEntry:
    """The entry for a name or a path; None is the default model."""
    if model is None or str(model) in ("", DEFAULT_MODEL, "default"):
        return ModelEntry(DEFAULT_MODEL, "", "llama.cpp", "default")
    for entry in list_models():
        if entry.name == str(model):
            return entry
    path = Path(model).expanduser()
    if path.exists():
        return ModelEntry(path_model_name(path), str(path), detect_backend(path), "registered")
    known = ", ".join(e.name for e in list_models())
    raise EngineError(
        f"unknown model {str(model)!r}: not a registered name ({known}) and no such path; "
        "register one with `musegpt models add NAME PATH`"
    )


def path_model_name(path: Path) -> str:
    """The name a model given by path goes by: a run's own folder for its best/ or last/
    checkpoint (runs/baby/best is "baby", not "best"), else the file or folder's stem."""
    folder = path.parent if path.name == "model.safetensors" else path
    if folder.name in ("best", "last") and folder.resolve().parent.name:
        return folder.resolve().parent.name
    return path.stem or path.resolve().name


def open_engine(
    model: str | Path | None = None, device: str = "cpu", overflow: OverflowPolicy = "slide"
) -> Engine:
    """Load `model` (a name or a path; None = the default) with its backend."""
    entry = find_model(model)
    if entry.backend == "remote":
        from musegpt.engines.remote import RemoteEngine, remote_models

        return RemoteEngine.load(entry.name, remote_models()[entry.name])
    from musegpt.adapters.registry import adapter_models, open_adapter_model

    adapter = adapter_models().get(entry.name) if entry.source != "default" else None
    if adapter is not None and adapter.adapter == entry.path:
        return open_adapter_model(adapter, overflow)
    path = Path(entry.path) if entry.path else default_model_path(name=entry.name)
    if entry.backend == "llama.cpp":
        from musegpt.engines.llama import LlamaCppEngine

        return LlamaCppEngine.load(path, name=entry.name, overflow=overflow)
    if entry.backend == "transformers":
        from musegpt.engines.hf import HFEngine

        return HFEngine.load(path, name=entry.name, device=device, overflow=overflow)
    from musegpt.engines.musegpt_model import MuseGPTEngine
    from musegpt.model.io import ModelFileError

    try:
        return MuseGPTEngine.load(path, name=entry.name, device=device, overflow=overflow)
    except ModelFileError as err:
        raise EngineError(str(err)) from err
