"""Decode speed on the default model (Gemma 3 270M, llama.cpp): llama.cpp's own sampler
against MuseGPT's decoder on llama.cpp's logits (what every studio task uses), same run.

    python benchmarks/llama_backend.py [--tokens 128] [--repeats 3]

Ours pays for moving 262,144 logits into torch and running the processors in Python each
step; this shows what that costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

from musegpt.engines.llama import LlamaCppEngine
from musegpt.engines.registry import open_engine
from musegpt.generation.params import SamplingParams

PROMPT = "The lighthouse keeper climbed the stairs one last time, and"


def best_of(repeats: int, fn: Callable[[], int]) -> float:
    """Tokens per second of the fastest of several runs."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = fn()
        rates.append(tokens / (time.perf_counter() - start))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    engine = open_engine(None)
    assert isinstance(engine, LlamaCppEngine)
    n = args.tokens

    def native(temperature: float) -> Callable[[], int]:
        def run() -> int:
            engine.llama.reset()
            out = engine.llama.create_completion(
                PROMPT, max_tokens=n, temperature=temperature, top_k=64, top_p=0.95, seed=1
            )
            return int(out["usage"]["completion_tokens"])

        return run

    def ours(params: SamplingParams) -> Callable[[], int]:
        def run() -> int:
            engine.llama.reset()
            return len(engine.complete(PROMPT, params)[0].token_ids)

        return run

    # min_new_tokens keeps both at the same length (no early end-of-text on our side).
    greedy = SamplingParams(temperature=0, max_new_tokens=n, min_new_tokens=n)
    studio = SamplingParams(
        temperature=0.8, top_k=64, top_p=0.95, frequency_penalty=0.3, presence_penalty=0.1,
        max_new_tokens=n, min_new_tokens=n, seed=1,
    )  # fmt: skip
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "llama.cpp greedy tok/s": round(best_of(args.repeats, native(0.0)), 1),
        "musegpt greedy tok/s": round(best_of(args.repeats, ours(greedy)), 1),
        "llama.cpp sampled tok/s": round(best_of(args.repeats, native(0.8)), 1),
        "musegpt studio sampling tok/s": round(best_of(args.repeats, ours(studio)), 1),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
