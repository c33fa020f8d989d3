"""Data-parallel training: two CPU processes under torchrun (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from test_train import TINY, plain_text, write_corpus

from musegpt.model.io import load_model
from musegpt.train.batches import BatchSampler
from musegpt.train.checkpoint import load_checkpoint_state


def test_ranks_draw_different_slices_of_one_global_batch() -> None:
    tokens = np.arange(10_000, dtype=np.uint16)
    whole = BatchSampler(tokens, block_size=16, batch_size=8, seed=3)
    ranks = [
        BatchSampler(tokens, block_size=16, batch_size=4, seed=3, rank=r, world_size=2)
        for r in range(2)
    ]
    for _ in range(3):
        x, y = whole.next()
        parts = [sampler.next() for sampler in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        assert not torch.equal(parts[0][0], parts[1][0])
        assert torch.equal(x[:, 1:], y[:, :-1])
    # One generator state describes every rank's position.
    assert torch.equal(ranks[0].get_state(), ranks[1].get_state())


def test_two_process_torchrun(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", plain_text(6000, 1), plain_text(1000, 2))
    settings = {
        **TINY,
        "max_iters": 30,
        "gradient_accumulation_steps": 2,  # exercises no_sync on the first micro-batch
        "eval_interval": 15,
        "log_interval": 5,
    }
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(settings))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
            *("-m", "musegpt.train", "--config", str(config), "--data", str(corpus.path)),
            *("--out", str(run), "--no-progress"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # Only rank 0 writes: each log step appears once, and one summary line is printed.
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(5, 31, 5))
    assert proc.stdout.count("done: 30 steps") == 1
    assert records[-1]["train_loss"] < records[0]["train_loss"] - 0.5
    evals = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(evals) == 2 and evals[1] < evals[0]

    model, _ = load_model(run / "last")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    state = load_checkpoint_state(run / "last")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    # The two ranks had different dropout/RNG streams.
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
