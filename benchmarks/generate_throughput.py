"""Decode speed of MuseGPT against Hugging Face `transformers` on the same weights.

For a ~10M and a ~30M-parameter model (random weights: speed does not depend on their
values), this saves a MuseGPT model, exports it with `musegpt export-hf`, and measures in one
run, for both: time to first token (batch 1, a 64-token prompt) and decode tokens/s at batch 1
and batch 8. Both sample with top-k 50 and are forced to produce exactly `--new-tokens` tokens.
Decode tokens/s leaves the first token out: (new - 1) tokens per row over the time after the
first token (at batch 8, after the batch's first token).

The two are measured in alternation, `--rounds` times, and each figure is the best of its
rounds, so that both see the same (shared, noisy) machine and a burst of someone else's work
does not count against either.

    python benchmarks/generate_throughput.py [--new-tokens 128] [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from musegpt.api import MuseModel
from musegpt.generation.params import SamplingParams
from musegpt.model import GPT, GPTConfig, save_model
from musegpt.tokenizer.bpe import BPETokenizer

SIZES = {"10M": dict(n_layer=6, n_head=5, n_embd=320), "30M": dict(n_layer=8, n_head=8, n_embd=512)}
PROMPT_TOKENS = 64


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_text() -> list[str]:
    from musegpt.data.builtin import get_builtin

    corpus = get_builtin("shakespeare")
    return [doc for doc, _ in zip(corpus.documents(corpus.locate()), range(40), strict=False)]


def measure(
    size: str, shape: dict[str, int], new: int, work: Path, rounds: int
) -> dict[str, float | str]:
    tokenizer = BPETokenizer.train(training_text(), vocab_size=8192)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=512, **shape)).eval()
    path = save_model(work / size, model, tokenizer)
    export = work / f"{size}-hf"
    subprocess.run(
        [sys.executable, "-m", "musegpt.cli.app", "export-hf", str(path), str(export)], check=True
    )
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(export).eval()
    muse = MuseModel(model, tokenizer)
    prompt_ids = tokenizer.encode(" ".join(training_text()[0].split()[:200]))[:PROMPT_TOKENS]
    prompt = tokenizer.decode(prompt_ids)
    ids = torch.tensor([prompt_ids])

    def ours(batch: int, tokens: int) -> Callable[[], object]:
        params = SamplingParams(
            max_new_tokens=tokens, min_new_tokens=tokens, top_k=50, seed=0, n=batch
        )
        return lambda: muse.complete(prompt, params)

    def theirs(batch: int, tokens: int) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return hf.generate(
                    ids.repeat(batch, 1),
                    attention_mask=torch.ones(batch, ids.shape[1], dtype=torch.long),
                    do_sample=True,
                    top_k=50,
                    max_new_tokens=tokens,
                    min_new_tokens=tokens,
                    pad_token_id=tokenizer.eot_id,
                )

        return run

    result: dict[str, float | str] = {"model": size, "params_M": model.num_parameters() / 1e6}
    runners = {"musegpt": ours, "transformers": theirs}
    for make in runners.values():
        make(1, 4)()  # warm-up
    best: dict[tuple[str, str], float] = {}
    for _ in range(rounds):  # alternate, so both see the same machine
        for name, make in runners.items():
            runs = [("first", make(1, 1))] * 3 + [("first8", make(8, 1))] * 3
            runs += [("b1", make(1, new)), ("b8", make(8, new))]
            for key, fn in runs:
                seconds = timed(fn)
                best[name, key] = min(best.get((name, key), seconds), seconds)
    for name in runners:
        first, first8 = best[name, "first"], best[name, "first8"]
        result[f"{name}_ttft_ms"] = first * 1000
        result[f"{name}_b1_tok_s"] = (new - 1) / (best[name, "b1"] - first)
        result[f"{name}_b8_tok_s"] = 8 * (new - 1) / (best[name, "b8"] - first8)
    result["b1_speedup_vs_transformers"] = float(result["musegpt_b1_tok_s"]) / float(
        result["transformers_b1_tok_s"]
    )
    result["musegpt_b8_over_b1"] = float(result["musegpt_b8_tok_s"]) / float(
        result["musegpt_b1_tok_s"]
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--sizes", nargs="*", default=list(SIZES))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(s, SIZES[s], args.new_tokens, Path(tmp), args.rounds) for s in args.sizes]
    print(json.dumps({"threads": args.threads, "torch": torch.__version__, "rows": rows}, indent=2))
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
