"""`procs: N`: local data-parallel processes that share each batch train the same run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rich.console import Console
from test_train import TINY, plain_text, write_corpus

from musegpt.model.io import load_model
from musegpt.train.config import TrainConfig
from musegpt.train.metrics import METRICS_FILE, MetricsLog
from musegpt.train.trainer import Trainer


def test_two_local_processes_train_the_same_run_as_one(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", plain_text(6000, 1), plain_text(1000, 2))
    settings = {**TINY, "max_iters": 20, "eval_interval": 10, "log_interval": 5}
    quiet = Console(quiet=True)
    one = Trainer(TrainConfig(**settings), corpus, tmp_path / "one", console=quiet).run()
    two = Trainer(TrainConfig(**settings, procs=2), corpus, tmp_path / "two", console=quiet).run()

    # Same global batch (8 rows, 4 per process), so the same tokens and the same losses.
    assert two.tokens == one.tokens == 20 * 8 * 32
    a = MetricsLog(tmp_path / "one" / METRICS_FILE).read()
    b = MetricsLog(tmp_path / "two" / METRICS_FILE).read()
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(5, 21, 5))
    for key in ("train_loss", "val_loss"):
        assert [r.get(key) for r in b] == pytest.approx([r.get(key) for r in a], abs=1e-4)
    assert a[-1]["train_loss"] < a[0]["train_loss"] - 0.3  # it did learn
    first, _ = load_model(tmp_path / "one" / "last")
    second, _ = load_model(tmp_path / "two" / "last")
    for p, q in zip(first.parameters(), second.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-4, rtol=1e-3)

    # A worker's error reaches the caller as itself, with its message.
    with pytest.raises(FileExistsError, match="already holds a run"):
        Trainer(TrainConfig(**settings, procs=2), corpus, tmp_path / "two", console=quiet).run()


def test_procs_must_divide_the_batch() -> None:
    with pytest.raises(ValueError, match=r"batch_size \(6\) must be a multiple of procs \(4\)"):
        TrainConfig(batch_size=6, procs=4)
    with pytest.raises(ValueError, match="procs must be at least 1"):
        TrainConfig(procs=0)
