"""Training speed: tokens/s and validation loss after a fixed number of steps.

    # nanoGPT's CPU "baby" config on character-level Shakespeare (prepared if missing)
    python benchmarks/train_throughput.py --config configs/shakespeare-char.yaml

    # the same, with nanoGPT's own train.py run on the same token arrays in the same run
    python benchmarks/train_throughput.py --config configs/shakespeare-char.yaml \
        --nanogpt ~/src/nanoGPT

    # a ~30M-parameter BPE model, 50 steps
    python benchmarks/train_throughput.py --config configs/bpe-30m.yaml \
        --data data/shakespeare-bpe --tokenizer bpe max_iters=50 eval_interval=50

tokens/s counts the whole loop after the first step (evaluations included), the way
nanoGPT's per-iteration times do; `train_tokens_per_second` leaves evaluation out.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from musegpt.data.prepare import prepare_corpus
from musegpt.train.config import load_config
from musegpt.train.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/shakespeare-char"))
    parser.add_argument("--tokenizer", choices=["char", "bpe"], default="char")
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout to compare against")
    parser.add_argument("overrides", nargs="*", help="key=value settings")
    args = parser.parse_args()

    if not (args.data / "manifest.json").exists():
        prepare_corpus(["shakespeare"], args.data, tokenizer=args.tokenizer)
    config = load_config(args.config, args.overrides)
    with tempfile.TemporaryDirectory() as out:
        result = Trainer(config, args.data, Path(out) / "run", progress=False).run()
    report: dict[str, object] = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": torch.get_num_threads(),
        "config": str(args.config),
        "overrides": args.overrides,
        "steps": result.steps,
        "tokens_per_second": round(result.tokens_per_second),
        "train_tokens_per_second": round(result.train_tokens_per_second),
        "final_val_loss": result.final_val_loss,
        "seconds": round(result.seconds, 1),
    }
    if args.nanogpt:
        from nanogpt_reference import run_nanogpt  # type: ignore[import-not-found]

        reference = run_nanogpt(args.nanogpt, args.data, max_iters=config.max_iters)
        report["nanogpt_tokens_per_second"] = round(reference.tokens_per_second)
        report["nanogpt_val_loss"] = reference.val_loss
        report["speedup"] = round(result.tokens_per_second / reference.tokens_per_second, 2)
        if result.final_val_loss is not None:
            report["val_loss_gap"] = round(result.final_val_loss - reference.val_loss, 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
