"""Fully sharded training (fsdp=true): two CPU processes under torchrun (gloo), against a
single process with the same global batch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from test_train import TINY, cli, plain_text, tiny, write_corpus
from typer.testing import CliRunner

from musegpt.model.io import load_model
from musegpt.train.checkpoint import load_checkpoint_state
from musegpt.train.trainer import Trainer

PER_RANK_BATCH = 8
SETTINGS: dict[str, Any] = {
    **TINY,
    "batch_size": PER_RANK_BATCH,
    "max_iters": 30,
    "lr_decay_iters": 30,  # the schedule must not move when max_iters grows on resume
    "gradient_accumulation_steps": 2,  # exercises set_requires_gradient_sync(False)
    "eval_interval": 10,
    "log_interval": 5,
    "dtype": "float32",  # exact comparison with the single process
}


def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
            *("-m", "musegpt.train", "--no-progress", *args),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An FSDP run stopped at step 20 and resumed to 30, and one process with the same
    global batch (2 x 8 rows) trained to 30 without stopping."""
    tmp = tmp_path_factory.mktemp("fsdp")
    corpus = write_corpus(tmp / "corpus", plain_text(6000, 1), plain_text(1000, 2))
    config = tmp / "fsdp.yaml"
    config.write_text(yaml.safe_dump(SETTINGS))
    sharded = tmp / "sharded"
    common = ("--config", str(config), "--data", str(corpus.path), "--out", str(sharded))
    first = torchrun(*common, "fsdp=true", "max_iters=20")
    at_20 = load_checkpoint_state(sharded / "last")
    resumed = torchrun(*common, "--resume")  # fsdp=true comes back from the checkpoint
    single = tmp / "single"
    cfg = tiny(**{**SETTINGS, "batch_size": 2 * PER_RANK_BATCH})
    Trainer(cfg, corpus, single, progress=False).run()
    return {
        "sharded": sharded,
        "single": single,
        "first": first,
        "resumed": resumed,
        "at_20": at_20,
    }


def test_fsdp_trains_like_one_process_and_resumes_exactly(runs: dict[str, Any]) -> None:
    sharded, single = records(runs["sharded"]), records(runs["single"])
    assert [r["step"] for r in sharded] == [r["step"] for r in single] == list(range(5, 31, 5))
    # Steps 5-20 before the stop, 25-30 after the resume: the same losses as one process
    # computing the whole batch, so the resume restored weights and AdamW's moments.
    for mine, theirs in zip(sharded, single, strict=True):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-4), mine
        assert mine.get("val_loss", 0) == pytest.approx(theirs.get("val_loss", 0), abs=1e-4)
    assert sharded[-1]["train_loss"] < sharded[0]["train_loss"] - 1.0
    assert runs["first"].stdout.count("done: 20 steps") == 1  # rank 0 alone reports
    assert runs["resumed"].stdout.count("done: 30 steps") == 1

    # The weights, gathered to rank 0 and saved as an ordinary model, are the same too.
    mine_model, _ = load_model(runs["sharded"] / "last")
    their_model, _ = load_model(runs["single"] / "last")
    for (name, a), b in zip(
        mine_model.state_dict().items(), their_model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_fsdp_checkpoint_is_an_ordinary_one(runs: dict[str, Any]) -> None:
    state = load_checkpoint_state(runs["sharded"] / "last")
    assert state["step"] == 30 and state["config"]["fsdp"] is True
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    # The optimizer state is whole and numbered, as a single process's: a plain AdamW over
    # a plain model takes it.
    model, _ = load_model(runs["sharded"] / "last")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2]},
            {"params": [p for p in params if p.dim() < 2]},
        ]
    )
    optimizer.load_state_dict(state["optimizer"])
    for group in optimizer.param_groups:
        for p in group["params"]:
            moments = optimizer.state[p]
            assert moments["exp_avg"].shape == p.shape
            assert float(moments["step"]) == 30.0
    assert runs["at_20"]["optimizer"]["state"][0]["step"] == 20.0

    result = CliRunner().invoke(
        sample_app(),
        [str(runs["sharded"] / "best"), "--prompt", "The cat", "--max-new-tokens", "20"],
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("The cat") and len(result.output.strip()) > len("The cat")


def sample_app() -> Any:
    import typer

    from musegpt.cli.sample import sample_command

    app = typer.Typer()
    app.command()(sample_command)
    return app


def test_fsdp_each_rank_holds_half_the_parameters(runs: dict[str, Any]) -> None:
    line = re.search(
        r"fsdp: 2 processes share ([\d,]+) parameters \(held per rank: ([\d,]+), ([\d,]+)\)",
        " ".join(runs["first"].stdout.split()),
    )
    assert line is not None, runs["first"].stdout
    total, rank0, rank1 = (int(n.replace(",", "")) for n in line.groups())
    model, _ = load_model(runs["sharded"] / "last")
    assert total == model.num_parameters()
    # Each parameter is split by rows; an odd row count gives one rank a row more.
    for held in (rank0, rank1):
        assert abs(held - total / 2) <= total * 0.02


def test_fsdp_is_refused_without_torchrun(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c", plain_text(600, 1), plain_text(200, 2))
    args = ["train", "--data", str(corpus.path), "--out", str(tmp_path / "r"), "fsdp=true"]
    result = CliRunner().invoke(cli(), [*args, "max_iters=2", "--no-progress"])
    assert result.exit_code != 0
    assert "torchrun --nproc_per_node=N" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r" / "last").exists()


def test_fsdp_mixed_precision_follows_the_training_dtype(tmp_path: Path) -> None:
    """With bfloat16 the blocks compute with bfloat16 weights while the sharded master
    weights and their gradients stay float32 (one process, so it runs in the test)."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from musegpt.model.config import GPTConfig
    from musegpt.model.gpt import GPT
    from musegpt.train.sharding import shard_model

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=40, block_size=8, n_layer=2, n_head=2, n_embd=16))
        shard_model(model, torch.bfloat16, torch.device("cpu"))
        seen: list[torch.dtype] = []
        model.blocks[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
        x = torch.randint(0, 40, (2, 8))
        model(x, x).loss.backward()
        assert seen == [torch.bfloat16]
        weight = model.blocks[0].mlp.c_fc.weight
        assert isinstance(weight, DTensor) and weight.dtype == torch.float32
        assert weight.grad is not None and weight.grad.dtype == torch.float32
    finally:
        dist.destroy_process_group()


def test_fsdp_refuses_adapters_and_devices_it_cannot_shard_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from musegpt.train.sharding import check_supported

    monkeypatch.setenv("RANK", "0")  # as torchrun sets them
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_supported(torch.device("cpu"), adapter=False)
    with pytest.raises(ValueError, match="cannot train adapters"):
        check_supported(torch.device("cpu"), adapter=True)
    with pytest.raises(ValueError, match="not mps"):
        check_supported(torch.device("mps"), adapter=False)
