"""Convenience: one continuation of one prompt, as text."""

from __future__ import annotations

from musegpt.generation.decoder import Decoder, GPTLogitsSource
from musegpt.generation.params import SamplingParams
from musegpt.model.gpt import GPT
from musegpt.tokenizer.base import Tokenizer


def sample_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int | None = None,
) -> str:
    """The continuation of `prompt` (without the prompt). An empty prompt starts a new
    document after the `<|endoftext|>` separator."""
    params = SamplingParams(
        max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k or 0, seed=seed
    )
    return Decoder(GPTLogitsSource(model), tokenizer).generate(prompt, params)[0].text
