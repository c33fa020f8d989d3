"""What the originality guard (`SamplingParams.max_copy`) costs: decoding with it against
decoding without it, on the same model, prompts, seeds and sampling settings.

Every run is forced to the same length (`min_new_tokens = max_new_tokens`); the guarded and
unguarded decode of each prompt run back to back, alternating which goes first, so that a
busy machine slows both alike. Two numbers per model and limit: the ratio guarded /
unguarded, and the guard's own time (every call of its processor, timed) as a share of the
unguarded decode. Times are the process's CPU seconds, which other jobs on a busy machine
disturb less than wall-clock time. The model needs its index first (`musegpt originality
index --model NAME`); building it is timed by that command, not here.

    python benchmarks/originality_overhead.py --model poetry --limits 32,12
    python benchmarks/originality_overhead.py --model abc-folk --limits 32,12 --prompts 4
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import torch

from musegpt.engines.base import Engine
from musegpt.engines.registry import open_engine
from musegpt.generation import copy_guard
from musegpt.generation.params import SamplingParams
from musegpt.originality.check import check_text
from musegpt.originality.store import index_for_model

PROMPTS = {
    "poetry": [
        "The autumn wind",
        "静夜思 · 李白\n",
        "Upon the hill",
        "春晓 · 孟浩然\n",
        "My love is like",
        "登高 · 杜甫\n",
    ],
    "abc-folk": [
        "X:1\nT:Morning Jig\nR:jig\nM:6/8\nL:1/8\nK:D\n",
        "X:1\nT:The Old Reel\nR:reel\nM:4/4\nL:1/8\nK:G\n",
        "X:1\nT:Slow Air\nR:air\nM:3/4\nL:1/8\nK:Ador\n",
        "X:1\nT:Hornpipe\nR:hornpipe\nM:4/4\nL:1/8\nK:A\n",
    ],
}


class TimedGuard(copy_guard.CopyGuard):
    """The guard, adding the CPU seconds its calls take to a shared counter."""

    spent = 0.0

    def __call__(self, state: Any, scores: torch.Tensor) -> torch.Tensor:
        start = time.process_time()
        try:
            return super().__call__(state, scores)
        finally:
            TimedGuard.spent += time.process_time() - start


def decode_seconds(engine: Engine, prompt: str, params: SamplingParams) -> tuple[float, str]:
    """The decode's CPU seconds (this process's, all threads), which other jobs on a busy
    machine disturb far less than its wall-clock time, and the text."""
    start = time.process_time()
    text = engine.complete(prompt, params)[0].text
    return time.process_time() - start, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="poetry", help="a model with an originality index")
    parser.add_argument("--limits", default="32,12", help="max_copy values, comma-separated")
    parser.add_argument("--prompts", type=int, default=6, help="prompts (each one seed)")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per decode")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    copy_guard.CopyGuard = TimedGuard  # type: ignore[misc]  # what the decoder builds
    engine = open_engine(args.model)
    index = index_for_model(engine.path, engine.tokenizer, engine.name)
    prompts = (PROMPTS.get(engine.name) or PROMPTS["poetry"])[: args.prompts]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"model {engine.name} ({engine.backend}), index of {index.size:,} tokens, "
        f"{platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}, load average {load}"
    )
    base = SamplingParams(
        temperature=0.8, top_p=0.95, max_new_tokens=args.tokens, min_new_tokens=args.tokens
    )
    # Warm-up, not counted: first-call allocations, and the index's pair table (built on
    # the guard's first use, once per process).
    decode_seconds(engine, prompts[0], base.model_copy(update={"seed": 0}))
    decode_seconds(engine, prompts[0], base.model_copy(update={"seed": 0, "max_copy": 8}))
    print(
        "| max_copy | decodes | tokens each | unguarded CPU s | guarded CPU s | ratio "
        "| guard's own s | guard share | longest copy unguarded | longest copy guarded |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for limit in [int(x) for x in args.limits.split(",")]:
        plain = guarded = 0.0
        copies_plain, copies_guarded = [], []
        TimedGuard.spent = 0.0
        for seed, prompt in enumerate(prompts, start=1):
            params = base.model_copy(update={"seed": seed})
            runs = [(False, params), (True, params.model_copy(update={"max_copy": limit}))]
            for guard, run in runs if seed % 2 else runs[::-1]:  # alternate which goes first
                seconds, text = decode_seconds(engine, prompt, run)
                copied = check_text(text, index, engine.tokenizer).longest_tokens
                if guard:
                    guarded += seconds
                    copies_guarded.append(copied)
                else:
                    plain += seconds
                    copies_plain.append(copied)
        print(
            f"| {limit} | {len(prompts)} | {args.tokens} | {plain:.2f} | {guarded:.2f} "
            f"| {guarded / plain:.2f}x | {TimedGuard.spent:.2f} | {TimedGuard.spent / plain:.1%} "
            f"| {max(copies_plain)} | {max(copies_guarded)} |"
        )


if __name__ == "__main__":
    main()
