"""LoRA fine-tuning through `peft`: low-rank adapters on the attention and feed-forward
projections, trained while the base weights stay frozen, then merged back so the result is
an ordinary MuseGPT model file."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from musegpt.model.gpt import GPT

# Every Linear layer inside the blocks; the tied embedding/head is left alone.
DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")


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
        unknown = sorted(set(self.targets) - set(DEFAULT_TARGETS))
        if unknown:
            raise ValueError(
                f"unknown lora target(s) {unknown}; choose from {', '.join(DEFAULT_TARGETS)}"
            )


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
    import copy

    if not is_lora(model):
        return base_model(model)
    clone = copy.deepcopy(model)
    merged: GPT = clone.merge_and_unload()  # type: ignore[operator]
    merged.lm_head.weight = merged.wte.weight  # keep the tie explicit after peft's surgery
    return merged


class LoraAdapter:
    """The trainer's `ModelAdapter` for LoRA: trains the adapters, saves merged weights."""

    def __init__(self, settings: LoraSettings | None = None) -> None:
        self.settings = settings or LoraSettings()

    def wrap(self, model: GPT) -> nn.Module:
        return add_lora(model, self.settings)

    def export(self, module: nn.Module) -> GPT:
        return merged_copy(module)
