"""Training speed: tokens/s and validation loss after a fixed number of steps.

    # nanoGPT's CPU "baby" config on character-level Shakespeare (prepared if missing)
    python benchmarks/train_throughput.py --config configs/shakespeare-char.yaml

    # the same, with nanoGPT's own train.py run on the same token arrays in the same run,
    # alternating MuseGPT and nanoGPT twice
    python benchmarks/train_throughput.py --config configs/shakespeare-char.yaml \
        --nanogpt ~/src/nanoGPT --repeats 2

    # a ~30M-parameter BPE model (8,192-token vocabulary), 30 steps
    python benchmarks/train_throughput.py --config configs/bpe-30m.yaml \
        --data data/shakespeare-bpe --tokenizer bpe max_iters=30 eval_interval=30 eval_iters=2

tokens/s counts the whole loop after the first step (evaluations included), the way
nanoGPT's per-iteration times do; `train_tokens_per_second` leaves evaluation out.
`median_window_tokens_per_second` is the median over 10-step windows (for nanoGPT, from its
per-iteration times): it shrugs off bursts of other work on a shared machine, which the
whole-loop figure does not. `--threads N` runs both programs with N torch threads (nanoGPT
through OMP_NUM_THREADS); by default both use torch's default, one per core. With
`--repeats`, the headline figures are each program's fastest run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from musegpt.data.prepare import prepare_corpus
from musegpt.train.config import TrainConfig, load_config
from musegpt.train.metrics import METRICS_FILE, MetricsLog
from musegpt.train.trainer import Trainer, resolve_device, resolve_dtype


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_musegpt(config: TrainConfig, data: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        run = Path(out) / "run"
        result = Trainer(config, data, run, progress=False).run()
        records = MetricsLog(run / METRICS_FILE).read()
    # Each record's tokens_per_sec covers the steps since the previous log point; the first
    # window holds the one-off warm-up of step 1, so it is left out.
    windows = [float(r["tokens_per_sec"]) for r in records[1:] if r.get("tokens_per_sec")]
    return {
        "tokens_per_second": round(result.tokens_per_second),
        "train_tokens_per_second": round(result.train_tokens_per_second),
        "median_window_tokens_per_second": round(statistics.median(windows)) if windows else None,
        "final_val_loss": result.final_val_loss,
        "seconds": round(result.seconds, 1),
        "steps": result.steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/shakespeare-char"))
    parser.add_argument("--tokenizer", choices=["char", "bpe"], default="char")
    parser.add_argument("--vocab-size", type=int, default=8192, help="for --tokenizer bpe")
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout to compare against")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, alternating")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("overrides", nargs="*", help="key=value settings")
    args = parser.parse_args()

    if not (args.data / "manifest.json").exists():
        sizes = {"vocab_size": args.vocab_size} if args.tokenizer == "bpe" else {}
        prepare_corpus(["shakespeare"], args.data, tokenizer=args.tokenizer, **sizes)
    overrides = list(args.overrides)
    if args.threads:
        overrides.append(f"threads={args.threads}")
    config = load_config(args.config, overrides)
    device = resolve_device(config.device)
    report: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": args.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "dtype": str(resolve_dtype(config.dtype, device)).removeprefix("torch."),
        "config": str(args.config),
        "overrides": args.overrides,
        "tokens_per_step": (
            config.batch_size * config.block_size * config.gradient_accumulation_steps
        ),
    }
    runs: dict[str, list[dict[str, Any]]] = {"musegpt": [], "nanogpt": []}
    for _ in range(args.repeats):
        runs["musegpt"].append(run_musegpt(config, args.data))
        if args.nanogpt:
            from nanogpt_reference import run_nanogpt  # type: ignore[import-not-found]

            ref = run_nanogpt(
                args.nanogpt, args.data, max_iters=config.max_iters, threads=args.threads
            )
            runs["nanogpt"].append(
                {
                    "tokens_per_second": round(ref.tokens_per_second),
                    "median_window_tokens_per_second": round(ref.median_window_tokens_per_second),
                    "final_val_loss": ref.val_loss,
                    "seconds": round(ref.wall_seconds, 1),
                }
            )
    report["musegpt_runs"] = runs["musegpt"]
    if runs["nanogpt"]:
        report["nanogpt_runs"] = runs["nanogpt"]

    # Headline figures: each program's fastest run, the one least disturbed by other work
    # on the machine (the losses do not vary between runs: both are seeded).
    def best(name: str, key: str) -> float:
        return max(float(r[key]) for r in runs[name])

    report["musegpt_tokens_per_second"] = round(best("musegpt", "tokens_per_second"))
    if runs["nanogpt"]:
        report["nanogpt_tokens_per_second"] = round(best("nanogpt", "tokens_per_second"))
        report["speedup"] = round(
            best("musegpt", "tokens_per_second") / best("nanogpt", "tokens_per_second"), 2
        )
        report["speedup_median_window"] = round(
            best("musegpt", "median_window_tokens_per_second")
            / best("nanogpt", "median_window_tokens_per_second"),
            2,
        )
        muse_loss = runs["musegpt"][-1]["final_val_loss"]
        if muse_loss is not None:
            report["val_loss_gap"] = round(muse_loss - runs["nanogpt"][-1]["final_val_loss"], 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
