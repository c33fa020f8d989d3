"""The shape of a MuseGPT model: everything needed to rebuild it, nothing about training."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

PositionalEncoding = Literal["learned", "sinusoidal", "rope"]
POSITIONAL_ENCODINGS: tuple[str, ...] = ("learned", "sinusoidal", "rope")
# The feed-forward activation: GPT-2's tanh-approximated GELU ("gelu_new"), or the exact (erf)
# GELU that nanoGPT and BERT use (one fused kernel instead of several: ~3% of a small step).
Activation = Literal["gelu_tanh", "gelu"]
ACTIVATIONS: tuple[str, ...] = ("gelu_tanh", "gelu")


@dataclass
class GPTConfig:
    vocab_size: int = 50304
    block_size: int = 256  # context window, in tokens
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = True  # GPT-2 has biases; exporting to Hugging Face needs them
    positional: PositionalEncoding = "learned"
    rope_base: float = 10000.0
    layer_norm_eps: float = 1e-5
    activation: Activation = "gelu_tanh"

    def __post_init__(self) -> None:
        problems = []
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be a positive integer (got {getattr(self, name)})")
        if self.n_embd % max(self.n_head, 1) != 0:
            problems.append(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.positional not in POSITIONAL_ENCODINGS:
            problems.append(
                f"positional must be one of {', '.join(POSITIONAL_ENCODINGS)} "
                f"(got {self.positional!r})"
            )
        if self.activation not in ACTIVATIONS:
            problems.append(
                f"activation must be one of {', '.join(ACTIVATIONS)} (got {self.activation!r})"
            )
        if self.positional == "rope" and (self.n_embd // max(self.n_head, 1)) % 2:
            problems.append("rope needs an even head size (n_embd / n_head)")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s): {', '.join(unknown)}")
        return cls(**data)
