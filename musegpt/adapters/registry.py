"""Adapters as models: a GGUF base and a GGUF LoRA under one name.

Shipped adapters (musegpt/weights/adapters/NAME.gguf, for the default model) are named
`gemma3-270m:NAME`, and `gemma3-270m-q5:NAME` on the default with its faster output
table; `musegpt models add NAME --base MODEL --adapter FILE` registers more in
adapters.json in the config folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from musegpt.engines.base import Engine, EngineError
from musegpt.engines.default_model import BUILT_IN, DEFAULT_MODEL
from musegpt.fileio import atomic_write_text
from musegpt.generation.decoder import OverflowPolicy
from musegpt.paths import config_dir

SHIPPED = Path(__file__).resolve().parent.parent / "weights" / "adapters"


@dataclass(frozen=True)
class AdapterModel:
    name: str
    base: str  # a model name or a .gguf path
    adapter: str  # the GGUF LoRA file
    scale: float
    source: Literal["packaged", "registered"]


def adapters_file() -> Path:
    return config_dir() / "adapters.json"


def shipped_adapter(name: str) -> Path | None:
    """The shipped adapter file called `name` (e.g. "tang"), if the package has it."""
    file = SHIPPED / f"{name}.gguf"
    return file if file.is_file() else None


def _registered() -> dict[str, AdapterModel]:
    file = adapters_file()
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return {
            str(name): AdapterModel(
                str(name), str(v["base"]), str(v["adapter"]), float(v["scale"]), "registered"
            )
            for name, v in data.get("adapters", {}).items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise EngineError(
            f"the adapter registry {file} is unreadable ({err}); fix or delete it"
        ) from None


def _save(adapters: dict[str, AdapterModel]) -> None:
    data = {
        name: {"base": a.base, "adapter": a.adapter, "scale": a.scale}
        for name, a in sorted(adapters.items())
    }
    text = json.dumps({"adapters": data}, indent=2, ensure_ascii=False)
    atomic_write_text(adapters_file(), text + "\n")


def adapter_models() -> dict[str, AdapterModel]:
    """Every adapter model by name: the shipped ones, then the registered ones."""
    models = {}
    for base in BUILT_IN if SHIPPED.is_dir() else ():
        for file in sorted(SHIPPED.glob("*.gguf")):
            name = f"{base}:{file.stem}"
            models[name] = AdapterModel(name, base, str(file), 1.0, "packaged")
    return {**models, **_registered()}


def is_gguf_adapter(file: Path) -> bool:
    """Whether `file` is a GGUF file whose metadata says it is an adapter."""
    try:
        from musegpt.engines.gguf_index import read_index

        return read_index(file).fields.get("general.type") == "adapter"
    except (OSError, ValueError, ImportError):
        return False


def add_adapter(name: str, base: str, adapter: Path, scale: float = 1.0) -> AdapterModel:
    """Register `adapter` on `base` under `name` (both checked; paths stored absolute)."""
    from musegpt.adapters.pipeline import gguf_base_path
    from musegpt.engines.registry import check_name, find_model

    check_name(name)
    if ":" in name and name.split(":", 1)[0] in BUILT_IN:
        raise EngineError(f"names starting {name.split(':', 1)[0]}: are the shipped adapters'")
    try:
        find_model(name)
    except EngineError:
        pass
    else:
        if name not in _registered():
            raise EngineError(f"{name!r} already names a model; pick another name")
    base_file = gguf_base_path(base)
    if base_file is None:
        raise EngineError(
            f"--base {base}: an adapter needs a GGUF base model (e.g. {DEFAULT_MODEL})"
        )
    file = adapter.expanduser().resolve()
    if not file.is_file():
        raise EngineError(f"no adapter file at {file}")
    if not is_gguf_adapter(file):
        raise EngineError(
            f"{file} is not a GGUF LoRA adapter (musegpt finetune --from {DEFAULT_MODEL} --lora "
            "writes one as adapter.gguf in its --out folder)"
        )
    if not 0 < scale <= 4:
        raise EngineError("--scale must be greater than 0 and at most 4")
    stored_base = base if str(base) in (*BUILT_IN, "default") else str(base_file)
    entry = AdapterModel(name, stored_base, str(file), scale, "registered")
    adapters = _registered()
    adapters[name] = entry
    _save(adapters)
    return entry


def remove_adapter(name: str) -> bool:
    """Forget a registered adapter model; False when `name` is not one."""
    adapters = _registered()
    if name not in adapters:
        return False
    del adapters[name]
    _save(adapters)
    return True


def open_adapter_model(model: AdapterModel, overflow: OverflowPolicy = "slide") -> Engine:
    """The base model on llama.cpp with the adapter applied."""
    from musegpt.adapters.pipeline import gguf_base_path
    from musegpt.engines.llama import LlamaCppEngine

    base_file = gguf_base_path(model.base)
    if base_file is None:
        raise EngineError(f"{model.name}: its base {model.base} is not a GGUF model")
    return LlamaCppEngine.load(
        base_file, name=model.name, overflow=overflow, lora_path=model.adapter,
        lora_scale=model.scale,
    )  # fmt: skip
