"""Run nanoGPT's own `train.py` on a MuseGPT-prepared corpus, for a like-for-like speed check.

nanoGPT is not part of MuseGPT: pass the folder of a nanoGPT checkout you have (`--nanogpt`).
Both programs then train on the very same token arrays (nanoGPT reads `train.bin`/`val.bin`
as uint16 plus a `meta.pkl` with the vocabulary size, which is what `musegpt prepare` writes
for vocabularies under 65,536).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# nanoGPT's README command for its CPU "baby" model (char-level Shakespeare).
BABY_FLAGS = [
    "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
    "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
    "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0", "--dtype=float32",
]  # fmt: skip
ITER_LINE = re.compile(r"^iter (\d+): loss ([\d.]+), time ([\d.]+)ms")
EVAL_LINE = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


@dataclass
class ReferenceResult:
    iters: int
    tokens_per_iter: int
    loop_seconds: float  # sum of nanoGPT's own per-iteration times, evaluation included
    tokens_per_second: float
    median_window_tokens_per_second: float  # median over 10-iteration windows
    val_loss: float
    wall_seconds: float


def run_nanogpt(
    nanogpt: Path, corpus: Path, max_iters: int = 2000, threads: int = 0, compile: bool = False
) -> ReferenceResult:
    """nanoGPT's baby config for `max_iters` steps on `corpus`; `threads` > 0 sets
    OMP_NUM_THREADS (torch's thread count) for it, 0 keeps torch's default. `compile` runs
    it with torch.compile (its train.py's default, which the README's CPU command turns
    off); its iteration 0, which is left out of the figures, then holds the compiling."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    if manifest["dtype"] != "uint16":
        raise SystemExit("nanoGPT reads uint16 token arrays; use a vocabulary under 65,536")
    vocab_size = manifest["tokenizer"]["vocab_size"]
    with tempfile.TemporaryDirectory(prefix="nanogpt-bench-") as tmp:
        work = Path(tmp)
        # train.py reads configurator.py and data/<dataset>/ relative to the working folder.
        for name in ("train.py", "model.py", "configurator.py", "config"):
            (work / name).symlink_to((nanogpt / name).resolve())
        data = work / "data" / "musegpt"
        data.mkdir(parents=True)
        for split in ("train", "val"):
            shutil.copy(corpus / manifest["splits"][split]["file"], data / f"{split}.bin")
        with open(data / "meta.pkl", "wb") as f:
            pickle.dump({"vocab_size": vocab_size}, f)
        replaced = ("--max_iters", "--lr_decay_iters", "--compile")
        flags = [f for f in BABY_FLAGS if not f.startswith(replaced)]
        flags += [f"--max_iters={max_iters}", f"--lr_decay_iters={max_iters}"]
        flags.append(f"--compile={compile}")
        command = [sys.executable, "train.py", "config/train_shakespeare_char.py",
                   "--dataset=musegpt", f"--out_dir={work / 'out'}", *flags]  # fmt: skip
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        start = time.perf_counter()
        proc = subprocess.run(
            command, cwd=work, capture_output=True, text=True, check=False, env=env
        )
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"nanoGPT failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    times, val_loss = [], float("nan")
    for line in proc.stdout.splitlines():
        if m := ITER_LINE.match(line):
            if int(m.group(1)) > 0:  # iteration 0's time includes start-up
                times.append(float(m.group(3)) / 1000)
        elif m := EVAL_LINE.match(line):
            val_loss = float(m.group(3))
    tokens_per_iter = 12 * 64
    loop = sum(times)
    windows = [sum(times[i : i + 10]) for i in range(0, len(times) - 9, 10)]
    return ReferenceResult(
        iters=len(times),
        tokens_per_iter=tokens_per_iter,
        loop_seconds=loop,
        tokens_per_second=len(times) * tokens_per_iter / loop,
        median_window_tokens_per_second=10 * tokens_per_iter / statistics.median(windows),
        val_loss=val_loss,
        wall_seconds=wall,
    )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout")
    parser.add_argument("--data", type=Path, required=True, help="a `musegpt prepare` folder")
    parser.add_argument("--max-iters", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="with torch.compile")
    args = parser.parse_args()
    result = run_nanogpt(args.nanogpt, args.data, args.max_iters, args.threads, args.compile)
    print(json.dumps(asdict(result), indent=2))
