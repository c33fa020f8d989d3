"""Backend: a MuseGPT model (our own GPT), batched in one forward pass with a KV cache."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from musegpt.engines.base import Engine, EngineError
from musegpt.generation.decoder import GPTLogitsSource, LogitsSource, OverflowPolicy
from musegpt.generation.params import SamplingParams
from musegpt.model.gpt import GPT
from musegpt.model.io import load_model
from musegpt.tokenizer.base import Tokenizer


class MuseGPTEngine(Engine):
    """A MuseGPT model and its tokenizer."""

    backend: ClassVar[str] = "musegpt"

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        name: str = "musegpt",
        path: str = "",
        overflow: OverflowPolicy = "slide",
    ) -> None:
        super().__init__(name, path, overflow)
        self.model = model.eval()
        self._tokenizer = tokenizer

    @classmethod
    def load(
        cls,
        path: str | Path,
        name: str | None = None,
        device: str | torch.device = "cpu",
        overflow: OverflowPolicy = "slide",
    ) -> MuseGPTEngine:
        model, tokenizer = load_model(path, device=device)
        if tokenizer.kind == "image":  # it writes pictures, not text
            shown = name or Path(path).stem
            raise EngineError(
                f"{shown} is an image model: it draws pictures rather than writing text; "
                f"use `musegpt draw CAPTION --model {shown}`"
            )
        return cls(model, tokenizer, name or Path(path).stem, str(path), overflow)

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def context_length(self) -> int:
        return self.model.config.block_size

    def logits_source(self, params: SamplingParams | None = None) -> LogitsSource:
        return GPTLogitsSource(self.model)
