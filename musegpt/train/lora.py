"""LoRA fine-tuning through `peft`: low-rank adapters on the attention and feed-forward
projections, trained while the base weights stay frozen, then merged back so the result is
an ordinary MuseGPT model file. The adapter alone can also be saved in peft's format
(`adapter_model.safetensors` + `adapter_config.json`), a small fraction of the model's size,
for `peft.PeftModel.from_pretrained(base_gpt, folder)`."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from musegpt.fileio import atomic_write, atomic_write_text
from musegpt.model.gpt import GPT

# Every Linear layer inside the blocks; the tied embedding/head is left alone.
DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")
ADAPTER_DIR = "adapter"  # inside a checkpoint folder, with --save-adapter
SETTINGS_FILE = "lora.json"  # in a run folder: the LoRA settings a resume must reuse


@dataclass
class LoraSettings:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"lora rank must be at least 1 (got {self.rank})")
        if self.alpha <= 0:
            raise ValueError(f"lora alpha must be positive (got {self.alpha})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora dropout must be in [0, 1) (got {self.dropout})")
        if not self.targets:
            raise ValueError(f"no lora targets given; choose from {', '.join(DEFAULT_TARGETS)}")
        unknown = sorted(set(self.targets) - set(DEFAULT_TARGETS))
        if unknown:
            raise ValueError(
                f"unknown lora target(s) {', '.join(unknown)}; choose from "
                f"{', '.join(DEFAULT_TARGETS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, run: Path) -> LoraSettings | None:
        """The settings a LoRA run in `run` was started with; None if it is not one."""
        file = run / SETTINGS_FILE
        if not file.is_file():
            return None
        try:
            return cls(**json.loads(file.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{file} is damaged ({err}); start a new run") from None

    def write(self, run: Path) -> None:
        atomic_write_text(run / SETTINGS_FILE, json.dumps(self.to_dict(), indent=2) + "\n")


def add_lora(model: GPT, settings: LoraSettings) -> nn.Module:
    """Wrap `model` with fresh adapters; only the adapters require gradients."""
    from peft import LoraConfig, get_peft_model  # heavy import, needed only here

    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.targets),
        bias="none",
    )
    wrapped: nn.Module = get_peft_model(model, config)
    return wrapped


def is_lora(model: nn.Module) -> bool:
    return any("lora_" in name for name, _ in model.named_parameters())


def base_model(model: nn.Module) -> GPT:
    """The GPT inside a peft wrapper (PeftModel → LoraModel → GPT), or the model itself."""
    if isinstance(model, GPT):
        return model
    inner = getattr(getattr(model, "base_model", None), "model", None)
    if isinstance(inner, GPT):
        return inner
    raise TypeError("not a MuseGPT model or a LoRA wrapper around one")


def merged_copy(model: nn.Module) -> GPT:
    """A plain GPT with the adapters folded into its weights; `model` is left as it was."""
    if not is_lora(model):
        return base_model(model)
    clone = copy.deepcopy(model)
    merged: GPT = clone.merge_and_unload()  # type: ignore[operator]
    merged.lm_head.weight = merged.wte.weight  # keep the tie explicit after peft's surgery
    return merged


def write_adapter(model: nn.Module, folder: str | Path) -> Path:
    """Write the adapter of a LoRA-wrapped model alone, in peft's format, into `folder`."""
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import save_file

    if not isinstance(model, PeftModel):
        raise TypeError("not a LoRA-wrapped model")
    folder = Path(folder)
    weights = {
        k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()
    }
    config = model.peft_config["default"]
    atomic_write(
        folder / "adapter_model.safetensors",
        lambda tmp: save_file(weights, str(tmp), metadata={"format": "pt"}),
    )
    config.save_pretrained(str(folder))  # adapter_config.json
    return folder


class LoraAdapter:
    """The trainer's `ModelAdapter` for LoRA: trains the adapters, saves merged weights.
    `module` is the wrapped model being trained, once `wrap` has run."""

    def __init__(self, settings: LoraSettings | None = None) -> None:
        self.settings = settings or LoraSettings()
        self.module: nn.Module | None = None

    def wrap(self, model: GPT) -> nn.Module:
        self.module = add_lora(model, self.settings)
        return self.module

    def export(self, module: nn.Module) -> GPT:
        return merged_copy(module)
