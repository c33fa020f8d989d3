"""--resume after a real crash continues exactly: the same weights, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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

# Dropout on, so the resumed run must also restore the RNG that draws the dropout masks;
# float32, whose evaluation runs through the decode-time weight copies (model/fastpath.py).
SETTINGS: dict[str, Any] = {
    **TINY,
    "dtype": "float32",
    "max_iters": 20,
    "dropout": 0.1,
    "eval_interval": 5,
    "checkpoint_interval": 5,
    "log_interval": 5,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> PreparedCorpus:
    return write_corpus(tmp_path_factory.mktemp("corpus"), plain_text(4000, 1), plain_text(800, 2))


@pytest.fixture(scope="module")
def straight(corpus: PreparedCorpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run uninterrupted, in this process."""
    run = tmp_path_factory.mktemp("straight") / "run"
    Trainer(TrainConfig(**SETTINGS), corpus, run, progress=False).run()
    return run


def weights(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run / name / "model.safetensors"))


# The training CLI in a child process that stops dead at one checkpoint of `last/` and
# waits there to be killed: "after" the checkpoint is complete, or "during" it, with the new
# model file half-way (written to its temporary file, not yet renamed into place). `last/`
# is either written or, when `best/` was just written at the same step, hard-linked to
# best/'s files (on the checkpoint writer's thread): both ways are stopped alike.
CHILD = """
import sys, time
from pathlib import Path

import musegpt.model.io as model_io
import musegpt.train.checkpoint as checkpoint
from musegpt.train.__main__ import main

marker, stop_step, when = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sys.argv = [sys.argv[0], *sys.argv[4:]]
write_model_file, link_files, put_in_place = (
    model_io.save_file, checkpoint._linked_to, checkpoint._put_in_place
)

def wait_to_be_killed() -> None:
    marker.write_text("stopped")
    time.sleep(600)

def save_file(tensors, filename, metadata=None):
    write_model_file(tensors, filename, metadata=metadata)
    if when == "during" and Path(filename).parent.name == "last":
        if int((metadata or {})["step"]) == stop_step:
            wait_to_be_killed()

def linked_to(source):
    link = link_files(source)
    def linking(tmp):
        link(tmp)
        if when == "during" and tmp.parent.name == "last" and source.name == model_io.MODEL_FILE:
            if int(model_io.read_metadata(source)["step"]) == stop_step:
                wait_to_be_killed()
    return linking

def in_place(written, *also):
    put_in_place(written, *also)
    for folder in (written.folder, *also):
        if when == "after" and folder.name == "last":
            if checkpoint.checkpoint_step(folder) == stop_step:
                wait_to_be_killed()

model_io.save_file = save_file
checkpoint._linked_to, checkpoint._put_in_place = linked_to, in_place
main()
"""


def train_until_killed(
    corpus: PreparedCorpus, out: Path, config_file: Path, step: int, when: str
) -> None:
    """Run the training CLI in another process and SIGKILL it at `step` (see CHILD): no
    clean-up, no atexit, exactly like a crash or a pulled plug."""
    marker = out.parent / f"{out.name}.stopped"
    log = out.parent / f"{out.name}.log"
    command = [
        *(sys.executable, "-c", CHILD, str(marker), str(step), when),
        *("--config", str(config_file), "--data", str(corpus.path), "--out", str(out)),
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as output:
        proc = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not marker.exists():
                assert proc.poll() is None, f"the run ended before step {step}: {log.read_text()}"
                assert time.monotonic() < deadline, f"no step {step} in 120 s: {log.read_text()}"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def val_losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["val_loss"] for line in lines]


@pytest.mark.parametrize("when", ["after", "during"])
def test_resume_after_sigkill_is_bit_identical(
    corpus: PreparedCorpus, straight: Path, tmp_path: Path, when: str
) -> None:
    crashed = tmp_path / "crashed"
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(SETTINGS))
    train_until_killed(corpus, crashed, config_file, 10, when)
    last = crashed / "last"
    if when == "after":
        assert load_checkpoint_state(last)["step"] == 10
        # Step 10 improved on step 5: last/ was linked to best/'s files, not written.
        assert (last / "model.safetensors").samefile(crashed / "best" / "model.safetensors")
    else:  # the step-5 checkpoint stands, beside the killed writer's temporary file
        assert load_checkpoint_state(last)["step"] == 5
        assert [p.name for p in last.glob(".model.safetensors.*.tmp")]

    cfg = TrainConfig(**SETTINGS)
    result = Trainer(cfg, corpus, crashed, resume=True, progress=False).run()
    assert result.steps == 20
    assert not [p.name for p in crashed.rglob("*.tmp")]

    a, b = weights(straight), weights(crashed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The best checkpoint and the optimizer state agree too, the metrics log has each step
    # once, and the validation losses logged are the same (each computed from the weights
    # of its own step, which a resumed process and an uninterrupted one share).
    for key, value in weights(straight, "best").items():
        assert torch.equal(value, weights(crashed, "best")[key]), key
    opt_a = load_checkpoint_state(straight / "last")["optimizer"]["state"]
    opt_b = load_checkpoint_state(crashed / "last")["optimizer"]["state"]
    for index in opt_a:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt_a[index][name], opt_b[index][name])
    assert val_losses(crashed) == val_losses(straight)
    assert len(val_losses(straight)) == 4

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


@pytest.mark.parametrize("umask", [0o022, 0o007])
def test_checkpoint_files_get_ordinary_permissions(
    corpus: PreparedCorpus, tmp_path: Path, umask: int
) -> None:
    """Both files of a checkpoint are created as any new file is: 0666 less the umask."""
    previous = os.umask(umask)
    try:
        cfg = TrainConfig(**{**SETTINGS, "max_iters": 5})
        Trainer(cfg, corpus, tmp_path / "r", progress=False).run()
    finally:
        os.umask(previous)
    for folder in ("last", "best"):
        for name in ("model.safetensors", STATE_FILE):
            mode = (tmp_path / "r" / folder / name).stat().st_mode & 0o777
            assert mode == 0o666 & ~umask, (folder, name, oct(mode))
