"""Training speed: tokens/s and validation loss after a fixed number of steps.

    # nanoGPT's CPU "baby" config on character-level Shakespeare (prepared if missing)
    python benchmarks/train_throughput.py --config configs/shakespeare-char.yaml

    # like for like against nanoGPT's own train.py, on the same token arrays in the same run:
    # MuseGPT with its default dtype, in float32, and in float32 compiled, alternating with
    # nanoGPT (float32: it autocasts only on CUDA), twice
    python benchmarks/train_throughput.py --config configs/shakespeare-char.yaml \
        --nanogpt ~/src/nanoGPT --repeats 2

    # a ~30M-parameter BPE model (8,192-token vocabulary), 30 steps
    python benchmarks/train_throughput.py --config configs/bpe-30m.yaml \
        --data data/shakespeare-bpe --tokenizer bpe --variants default \
        max_iters=30 eval_interval=30 eval_iters=2

MuseGPT runs in the variants named by `--variants`: `default` (the config as it is, e.g.
`dtype: auto`, which is bfloat16 autocast on a CPU with native bf16), `float32` (the config
with dtype=float32), `float32-compiled` (dtype=float32 compile=true), and the same two
with `procs=2` (`float32-procs2`, `float32-compiled-procs2`: two processes, one per core,
sharing each batch). Each pair with nanoGPT is reported: tokens/s, speed-up and the
validation loss gap.

tokens/s counts the whole loop after the first step (evaluations included), the way
nanoGPT's per-iteration times do (its iteration 0, like MuseGPT's first step, holds the
one-off start-up, torch.compile included); `train_tokens_per_second` leaves evaluation out.
`compile_seconds` is that first step's time for a compiled run, and `wall_seconds` the run
from start to end (set-up and compiling included). `median_window_tokens_per_second` is the
median over 10-step windows (for nanoGPT, from its per-iteration times): it shrugs off
bursts of other work on a shared machine, which the whole-loop figure does not.
`cpu_seconds` is the CPU time of the whole run, all threads, start-up and compiling included
(nanoGPT's: its process's); on a busy machine it moves far less than the wall-clock figures.
`phase_seconds` is where MuseGPT's loop spent its wall time after the first step besides the
training steps: evaluations, checkpoints, loss.png and the log points.
`--threads N` runs both programs with N torch threads (nanoGPT through OMP_NUM_THREADS); by
default both use torch's default, one per core. The `procs2` variants ignore it: their two
processes split the cores between them. With `--repeats`, the runs alternate
between the programs, so that other work on the machine falls on both, and the headline
figures are each variant's fastest run; the load average is recorded with each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from musegpt.data.prepare import prepare_corpus
from musegpt.train.config import TrainConfig, load_config
from musegpt.train.metrics import METRICS_FILE, MetricsLog
from musegpt.train.trainer import Trainer, resolve_device, resolve_dtype

# MuseGPT's variants: the overrides each adds to the config.
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "float32": ["dtype=float32"],
    "float32-compiled": ["dtype=float32", "compile=true"],
    # Two local processes, one per core, each on half of every batch (same global batch,
    # same run): musegpt/train/local_procs.py.
    "float32-procs2": ["dtype=float32", "procs=2"],
    "float32-compiled-procs2": ["dtype=float32", "compile=true", "procs=2"],
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_musegpt(config: TrainConfig, data: Path) -> dict[str, Any]:
    load = load_average()
    start, cpu_start = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as out:
        run = Path(out) / "run"
        # Its log lines go to stderr, so that stdout is the JSON report alone.
        result = Trainer(config, data, run, progress=False, console=Console(stderr=True)).run()
        records = MetricsLog(run / METRICS_FILE).read()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # Each record's tokens_per_sec covers the steps since the previous log point; the first
    # window holds the one-off warm-up of step 1, so it is left out.
    windows = [float(r["tokens_per_sec"]) for r in records[1:] if r.get("tokens_per_sec")]
    compile_seconds = result.compile_seconds
    return {
        "tokens_per_second": round(result.tokens_per_second),
        "train_tokens_per_second": round(result.train_tokens_per_second),
        "median_window_tokens_per_second": round(statistics.median(windows)) if windows else None,
        "final_val_loss": result.final_val_loss,
        "seconds": round(result.seconds, 1),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "compile_seconds": round(compile_seconds, 1) if compile_seconds is not None else None,
        "phase_seconds": result.phase_seconds,
        "steps": result.steps,
        "load_before": load,
        "load_after": load_average(),
    }


def run_reference(
    nanogpt: Path, data: Path, max_iters: int, threads: int, compile: bool
) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).parent))
    from nanogpt_reference import run_nanogpt

    load = load_average()
    cpu_start = children_cpu_seconds()
    ref = run_nanogpt(nanogpt, data, max_iters=max_iters, threads=threads, compile=compile)
    return {
        "tokens_per_second": round(ref.tokens_per_second),
        "median_window_tokens_per_second": round(ref.median_window_tokens_per_second),
        "final_val_loss": ref.val_loss,
        "wall_seconds": round(ref.wall_seconds, 1),
        "cpu_seconds": round(children_cpu_seconds() - cpu_start, 1),
        "load_before": load,
        "load_after": load_average(),
    }


def pair(muse: list[dict[str, Any]], nano: list[dict[str, Any]]) -> dict[str, Any]:
    """Speed-up of MuseGPT's runs over nanoGPT's (fastest against fastest, and medians of
    the 10-step windows), and the validation loss gap (both are seeded, so their losses
    repeat run to run)."""

    def best(runs: list[dict[str, Any]], key: str) -> float:
        return max(float(r[key]) for r in runs if r[key] is not None)

    result = {
        "speedup": round(best(muse, "tokens_per_second") / best(nano, "tokens_per_second"), 2),
        "speedup_median_window": round(
            best(muse, "median_window_tokens_per_second")
            / best(nano, "median_window_tokens_per_second"),
            2,
        ),
        "speedup_per_run": [
            round(m["tokens_per_second"] / n["tokens_per_second"], 2)
            for m, n in zip(muse, nano, strict=False)
        ],
    }
    muse_loss = muse[-1]["final_val_loss"]
    if muse_loss is not None:
        result["val_loss_gap"] = round(muse_loss - nano[-1]["final_val_loss"], 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/shakespeare-char"))
    parser.add_argument("--tokenizer", choices=["char", "bpe"], default="char")
    parser.add_argument("--vocab-size", type=int, default=8192, help="for --tokenizer bpe")
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout to compare against")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, alternating")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"MuseGPT variants to run, comma-separated, of: {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--nanogpt-compiled",
        action="store_true",
        help="also run nanoGPT with torch.compile, against MuseGPT's float32-compiled",
    )
    parser.add_argument("overrides", nargs="*", help="key=value settings")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")

    if not (args.data / "manifest.json").exists():
        sizes = {"vocab_size": args.vocab_size} if args.tokenizer == "bpe" else {}
        prepare_corpus(["shakespeare"], args.data, tokenizer=args.tokenizer, **sizes)
    overrides = list(args.overrides)
    threads = [f"threads={args.threads}"] if args.threads else []
    configs = {
        v: load_config(
            args.config, overrides + ([] if v.endswith("procs2") else threads) + VARIANTS[v]
        )
        for v in variants
    }
    first = configs[variants[0]]
    device = resolve_device(first.device)
    report: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": args.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "dtypes": {
            v: str(resolve_dtype(c.dtype, device)).removeprefix("torch.")
            + (" compiled" if c.compile else "")
            for v, c in configs.items()
        },
        "config": str(args.config),
        "overrides": args.overrides,
        "tokens_per_step": (
            first.batch_size * first.block_size * first.gradient_accumulation_steps
        ),
        "load_at_start": load_average(),
    }
    if args.nanogpt:
        report["dtypes"]["nanogpt"] = "float32 (nanoGPT autocasts only on CUDA)"
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    nano_runs: list[dict[str, Any]] = []
    nano_compiled_runs: list[dict[str, Any]] = []
    for _ in range(args.repeats):
        # MuseGPT's variants with nanoGPT between the first and the rest (and compiled
        # nanoGPT at the end), so that each variant has a nanoGPT run next to it.
        for i, variant in enumerate(variants):
            runs[variant].append(run_musegpt(configs[variant], args.data))
            print(f"{variant}: {runs[variant][-1]}", file=sys.stderr, flush=True)
            if args.nanogpt and i == 0:
                nano_runs.append(
                    run_reference(args.nanogpt, args.data, first.max_iters, args.threads, False)
                )
                print(f"nanogpt: {nano_runs[-1]}", file=sys.stderr, flush=True)
        if args.nanogpt and args.nanogpt_compiled:
            nano_compiled_runs.append(
                run_reference(args.nanogpt, args.data, first.max_iters, args.threads, True)
            )
            print(f"nanogpt compiled: {nano_compiled_runs[-1]}", file=sys.stderr, flush=True)

    report["musegpt_runs"] = runs
    for variant in variants:
        report[f"musegpt_{variant}_tokens_per_second"] = max(
            r["tokens_per_second"] for r in runs[variant]
        )
    if nano_runs:
        report["nanogpt_runs"] = nano_runs
        report["nanogpt_tokens_per_second"] = max(r["tokens_per_second"] for r in nano_runs)
        report["pairs"] = {
            f"musegpt {variant} vs nanogpt": pair(runs[variant], nano_runs) for variant in variants
        }
    if nano_compiled_runs:
        report["nanogpt_compiled_runs"] = nano_compiled_runs
        report["nanogpt_compiled_tokens_per_second"] = max(
            r["tokens_per_second"] for r in nano_compiled_runs
        )
        for variant in variants:
            report["pairs"][f"musegpt {variant} vs nanogpt compiled"] = pair(
                runs[variant], nano_compiled_runs
            )
    report["load_at_end"] = load_average()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
