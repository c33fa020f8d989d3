"""The Python API: `musegpt.load(path)` gives a model you can generate and stream from.

import musegpt
model = musegpt.load("runs/baby/best")
print(model.generate("ROMEO:", max_new_tokens=100, temperature=0.8, seed=1))
for piece in model.stream("JULIET:", max_new_tokens=100):
    print(piece, end="", flush=True)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from musegpt.generation.decoder import (
    Completion,
    Decoder,
    GPTLogitsSource,
    OverflowPolicy,
)
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import LogitsProcessor
from musegpt.model.gpt import GPT
from musegpt.model.io import load_model
from musegpt.tokenizer.base import Tokenizer


def _params(params: SamplingParams | None, overrides: dict[str, Any]) -> SamplingParams:
    """`params` with keyword overrides applied, validated like any other SamplingParams."""
    base = params.model_dump() if params is not None else {}
    return SamplingParams(**{**base, **overrides})


class MuseModel:
    """A MuseGPT model and its tokenizer, ready to write."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, overflow: OverflowPolicy = "slide"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.decoder = Decoder(GPTLogitsSource(model), tokenizer, overflow)

    def complete(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams | None = None,
        constraints: Sequence[LogitsProcessor] = (),
        **overrides: Any,
    ) -> list[Completion]:
        """Every completion (n per prompt) with token ids, finish reason and log-probs."""
        return self.decoder.generate(prompts, _params(params, overrides), constraints)

    def generate(
        self,
        prompt: str,
        params: SamplingParams | None = None,
        constraints: Sequence[LogitsProcessor] = (),
        **overrides: Any,
    ) -> str:
        """The text of the first completion of `prompt`."""
        return self.complete(prompt, params, constraints, **overrides)[0].text

    def stream(
        self,
        prompt: str,
        params: SamplingParams | None = None,
        constraints: Sequence[LogitsProcessor] = (),
        cancel: threading.Event | None = None,
        **overrides: Any,
    ) -> Iterator[str]:
        """Text pieces of the first completion as they are written."""
        for delta in self.decoder.stream(prompt, _params(params, overrides), constraints, cancel):
            if delta.index == 0 and delta.text:
                yield delta.text


def load(
    path: str | Path, device: str | torch.device = "cpu", overflow: OverflowPolicy = "slide"
) -> MuseModel:
    """Load a MuseGPT model file (or the folder holding model.safetensors)."""
    model, tokenizer = load_model(path, device=device)
    return MuseModel(model, tokenizer, overflow)
