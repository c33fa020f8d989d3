"""--resume after a real crash continues exactly: the same weights, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_train import TINY, plain_text, write_corpus

from musegpt.data.dataset import PreparedCorpus
from musegpt.model.io import load_model, save_model
from musegpt.train import TrainConfig, Trainer
from musegpt.train.checkpoint import (
    NEXT_STATE_FILE,
    STATE_FILE,
    CheckpointError,
    load_checkpoint_state,
)
from musegpt.train.trainer import KILL_AFTER_STEP_ENV

# Dropout on, so the resumed run must also restore the RNG that draws the dropout masks.
SETTINGS: dict[str, Any] = {
    **TINY,
    "max_iters": 20,
    "dropout": 0.1,
    "eval_interval": 5,
    "checkpoint_interval": 5,
    "log_interval": 5,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> PreparedCorpus:
    return write_corpus(tmp_path_factory.mktemp("corpus"), plain_text(4000, 1), plain_text(800, 2))


def weights(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run / name / "model.safetensors"))


def test_resume_after_sigkill_is_bit_identical(corpus: PreparedCorpus, tmp_path: Path) -> None:
    cfg = TrainConfig(**SETTINGS)
    straight = tmp_path / "straight"
    Trainer(cfg, corpus, straight, progress=False).run()

    # The same run in another process, which SIGKILLs itself right after its step-10
    # checkpoint: no clean-up, no atexit, exactly like a crash or a pulled plug.
    crashed = tmp_path / "crashed"
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(SETTINGS))
    env = {**os.environ, KILL_AFTER_STEP_ENV: "10", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "musegpt.train", "--config", str(config_file)),
            *("--data", str(corpus.path), "--out", str(crashed), "--no-progress"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert load_checkpoint_state(crashed / "last")["step"] == 10

    result = Trainer(cfg, corpus, crashed, resume=True, progress=False).run()
    assert result.steps == 20

    a, b = weights(straight), weights(crashed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The best checkpoint and the optimizer state agree too, and the metrics log has each
    # step once.
    for key, value in weights(straight, "best").items():
        assert torch.equal(value, weights(crashed, "best")[key]), key
    opt_a = load_checkpoint_state(straight / "last")["optimizer"]["state"]
    opt_b = load_checkpoint_state(crashed / "last")["optimizer"]["state"]
    for index in opt_a:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt_a[index][name], opt_b[index][name])
    lines = (crashed / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((straight / "metrics.jsonl").read_text().splitlines()) == 4

    with pytest.raises(ValueError, match=r"already reached step 20.*larger max_iters"):
        Trainer(cfg, corpus, crashed, resume=True, progress=False).run()


def test_resume_refuses_a_different_run(corpus: PreparedCorpus, tmp_path: Path) -> None:
    run = tmp_path / "r"
    Trainer(TrainConfig(**{**SETTINGS, "max_iters": 5}), corpus, run, progress=False).run()
    changed = TrainConfig(**{**SETTINGS, "batch_size": 4})
    with pytest.raises(ValueError, match=r"cannot resume with different settings for: batch_size"):
        Trainer(changed, corpus, run, resume=True, progress=False).run()
    with pytest.raises(CheckpointError, match="nothing to resume"):
        Trainer(changed, corpus, tmp_path / "empty", resume=True, progress=False).run()


def test_crash_between_checkpoint_files_stays_consistent(
    corpus: PreparedCorpus, tmp_path: Path
) -> None:
    """A checkpoint is written state.next.pt -> model.safetensors -> state.pt; whatever
    point a crash stops that at, the folder still holds a model and a state of one step."""
    run = tmp_path / "r"
    Trainer(TrainConfig(**{**SETTINGS, "max_iters": 10}), corpus, run, progress=False).run()
    last = run / "last"
    step10 = load_checkpoint_state(last)
    assert step10["step"] == 10

    # Crash after the new state was written but before the model: a stray newer state.
    newer = {**step10, "step": 15}
    torch.save(newer, last / NEXT_STATE_FILE)
    assert load_checkpoint_state(last)["step"] == 10

    # Crash after the model was replaced but before the rename: the model is at step 15,
    # state.pt still at 10, and state.next.pt (step 15) is the one that matches.
    model, tokenizer = load_model(last)
    save_model(last, model, tokenizer, metadata={"step": "15"})
    assert load_checkpoint_state(last)["step"] == 15
    assert torch.load(last / STATE_FILE, weights_only=True)["step"] == 10

    # Neither state matches the model: a clear error, not a silently wrong resume.
    (last / NEXT_STATE_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"model is at step 15 but state\.pt is at step 10"):
        load_checkpoint_state(last)
