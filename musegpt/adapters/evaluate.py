"""Held-out perplexity of a GGUF model, with or without a LoRA, as llama.cpp computes it:
the numbers describe the quantised model the studio actually writes with."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Perplexity:
    loss: float  # mean negative log-likelihood per predicted token (nats)
    tokens: int
    documents: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)


def open_scoring_model(model: Path, lora: Path | None, context: int) -> Any:
    """A llama.cpp model that keeps the logits of every position."""
    from llama_cpp import Llama
    from llama_cpp._utils import suppress_stdout_stderr

    from musegpt.engines.llama import ThreadBudget, loading_defaults, usable_cores

    # Only the cores other programs leave free: on a busy machine one waiting thread stalls
    # all of llama.cpp's (see musegpt/engines/llama.py).
    threads = ThreadBudget(usable_cores()).threads(1)
    with suppress_stdout_stderr(disable=False), loading_defaults():
        return Llama(
            model_path=str(model),
            lora_path=str(lora) if lora else None,
            n_ctx=context,
            n_batch=context,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=True,
            verbose=False,
        )


def gguf_perplexity(
    model: Path, documents: Sequence[str], lora: Path | None = None, max_tokens: int = 256
) -> Perplexity:
    """Perplexity over `documents` (each scored alone: BOS, its tokens, EOS; cut to
    `max_tokens`), the first token of each being given."""
    llama = open_scoring_model(model, lora, max_tokens)
    eos = int(llama.token_eos())
    total, count, scored = 0.0, 0, 0
    try:
        for text in documents:
            ids = [*llama.tokenize(text.encode("utf-8"), add_bos=True, special=False), eos]
            ids = ids[:max_tokens]
            if len(ids) < 2:
                continue
            llama.reset()
            llama.eval(ids)
            logits = np.asarray(llama.scores[: len(ids) - 1], dtype=np.float64)
            peak = logits.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(logits - peak).sum(axis=1)) + peak[:, 0]
            picked = logits[np.arange(len(ids) - 1), ids[1:]]
            total += float((log_norm - picked).sum())
            count += len(ids) - 1
            scored += 1
    finally:
        # Freed here, not by the garbage collector: collected on another thread, a model
        # with an adapter crashed the process in llama-cpp-python's `free_lora_adapter`
        # (seen once in CI, during an adapter job in the server's tests).
        llama.close()
    if count == 0:
        raise ValueError("no held-out document to score")
    return Perplexity(total / count, count, scored)


def char_ngrams(texts: Sequence[str], n: int = 3) -> Counter[str]:
    """Character n-gram counts over `texts` (whitespace folded to one space)."""
    counts: Counter[str] = Counter()
    for text in texts:
        flat = " ".join(text.split())
        counts.update(flat[i : i + n] for i in range(len(flat) - n + 1))
    return counts


def style_distance(written: Sequence[str], reference: Sequence[str], n: int = 3) -> float:
    """1 - cosine similarity of the character n-gram profiles: 0 is the same profile."""
    a, b = char_ngrams(written, n), char_ngrams(reference, n)
    dot = sum(count * b[gram] for gram, count in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return 1.0 - dot / norm if norm else 1.0


def continuations(
    model: Path, documents: Sequence[str], lora: Path | None, tokens: int = 60, seed: int = 1
) -> list[str]:
    """What the model writes after the first sentence-ish start (40 characters) of each
    document: the text a style distance compares with the writer's own."""
    from musegpt.engines.llama import LlamaCppEngine
    from musegpt.generation.params import SamplingParams

    engine = LlamaCppEngine.load(model, lora_path=lora, context_length=512)
    params = SamplingParams(max_new_tokens=tokens, seed=seed, temperature=0.8, top_p=0.95)
    try:
        return [engine.complete(text[:40], params)[0].text for text in documents]
    finally:
        engine.llama.close()  # freed here, not by the collector (see `gguf_perplexity`)
