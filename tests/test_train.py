"""`musegpt train` / `musegpt finetune`: real tiny models trained for a few seconds."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from musegpt.data.dataset import PreparedCorpus
from musegpt.model import GPT, GPTOutput, load_model
from musegpt.model.io import MODEL_FILE, read_metadata
from musegpt.tokenizer.base import Tokenizer
from musegpt.tokenizer.char import CharTokenizer
from musegpt.train import Trainer, TrainingDiverged, load_config
from musegpt.train.batches import BatchSampler
from musegpt.train.checkpoint import (
    STATE_FILE,
    CheckpointWriter,
    load_checkpoint_state,
    save_checkpoint,
)
from musegpt.train.config import SHAKESPEARE_CHAR, TrainConfig, parse_overrides
from musegpt.train.finetune import finetune
from musegpt.train.trainer import (
    cpu_has_native_bf16,
    learning_rate_at,
    pass_seconds,
    resolve_dtype,
)

ROOT = Path(__file__).resolve().parents[1]

# A tiny model: a training step takes a few milliseconds on one thread.
TINY: dict[str, Any] = {
    "n_layer": 2,
    "n_head": 2,
    "n_embd": 32,
    "block_size": 32,
    "batch_size": 8,
    "max_iters": 60,
    "learning_rate": 3e-3,
    "min_lr": 3e-4,
    "warmup_iters": 5,
    "eval_interval": 20,
    "eval_iters": 5,
    "log_interval": 5,
    "threads": 1,
    "seed": 7,
}


# ---------------------------------------------------------------- tiny corpora


def plain_text(n_words: int, seed: int) -> str:
    """Lower-case prose with short sentences: corpus "A"."""
    rng = random.Random(seed)
    words = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "hat", "big"]
    out = []
    for _ in range(n_words // 6):
        out.append(" ".join(rng.choice(words) for _ in range(6)).capitalize() + ".")
    return " ".join(out)


def shouting_text(n_lines: int, seed: int) -> str:
    """A distinctive style: corpus "B", all capitals, chanted, one line each."""
    rng = random.Random(seed)
    chants = ["ZIG ZAG ZOOM", "BOOM BOOM BAM", "ZAP ZAP ZING", "BAM ZIG BOOM"]
    return "\n".join(rng.choice(chants) + "!!" for _ in range(n_lines))


ALPHABET = plain_text(600, 0) + shouting_text(50, 0)


def write_corpus(
    folder: Path, train: str, val: str, tokenizer: Tokenizer | None = None
) -> PreparedCorpus:
    """A prepared-corpus folder in the format `musegpt.data.dataset` reads."""
    tok = tokenizer or CharTokenizer.train([ALPHABET])
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for name, text in (("train", train), ("val", val)):
        ids = np.array([*tok.encode(text), tok.eot_id], dtype=np.uint16)
        ids.tofile(folder / f"{name}.bin")
        splits[name] = {"file": f"{name}.bin", "tokens": int(ids.size)}
    manifest = {
        "dtype": "uint16",
        "splits": splits,
        "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "tokenizer.json").write_text(tok.to_json(), encoding="utf-8")
    return PreparedCorpus.open(folder)


@pytest.fixture(scope="module")
def corpus_a(tmp_path_factory: pytest.TempPathFactory) -> PreparedCorpus:
    return write_corpus(
        tmp_path_factory.mktemp("corpus-a"), plain_text(6000, 1), plain_text(1200, 2)
    )


@pytest.fixture(scope="module")
def corpus_b(tmp_path_factory: pytest.TempPathFactory) -> PreparedCorpus:
    return write_corpus(
        tmp_path_factory.mktemp("corpus-b"), shouting_text(800, 3), shouting_text(200, 4)
    )


def tiny(**settings: Any) -> TrainConfig:
    return TrainConfig(**{**TINY, **settings})


def metrics(run: Path) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@torch.no_grad()
def mean_loss(model: GPT, corpus: PreparedCorpus, split: str = "val", block: int = 32) -> float:
    """Loss over consecutive non-overlapping windows of a split (deterministic)."""
    model.eval()
    tokens = torch.from_numpy(corpus.tokens(split).astype(np.int64))
    n = (len(tokens) - 1) // block
    x = tokens[: n * block].view(n, block)
    y = tokens[1 : n * block + 1].view(n, block)
    out = model(x, y)
    assert out.loss is not None
    return float(out.loss)


@pytest.fixture(scope="module")
def base_run(corpus_a: PreparedCorpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("base") / "run"
    Trainer(tiny(), corpus_a, run, progress=False).run()
    return run


# ---------------------------------------------------------------- training


def test_loss_decreases_and_run_folder_is_complete(
    corpus_a: PreparedCorpus, base_run: Path
) -> None:
    records = metrics(base_run)
    assert [r["step"] for r in records] == list(range(5, 61, 5))
    first, last = records[0], records[-1]
    assert {"step", "train_loss", "lr", "tokens_per_sec", "elapsed_s"} <= set(first)
    assert "val_loss" not in first
    assert {"val_loss", "ppl"} <= set(last)
    assert last["ppl"] == pytest.approx(math.exp(last["val_loss"]), rel=1e-3)
    assert last["train_loss"] < first["train_loss"] - 0.5
    evals = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(evals) == 3 and evals[-1] < evals[0]
    assert (base_run / "loss.png").read_bytes().startswith(b"\x89PNG")
    for name in ("last", "best"):
        model, tokenizer = load_model(base_run / name)
        assert tokenizer.to_dict() == corpus_a.tokenizer.to_dict()
        assert model.config.n_layer == 2 and model.config.vocab_size == tokenizer.vocab_size
    state = load_checkpoint_state(base_run / "last")
    assert state["step"] == 60
    assert {"optimizer", "rng", "data", "config", "best_val_loss"} <= set(state)
    # The trained model is far better than chance on held-out text.
    model, _ = load_model(base_run / "best")
    assert mean_loss(model, corpus_a) < math.log(model.config.vocab_size) - 2


def test_loss_plot_is_redrawn_at_most_every_interval_and_at_the_end(
    corpus_a: PreparedCorpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import musegpt.train.trainer as trainer

    drawn: list[int] = []

    def plot(records: list[dict[str, Any]], path: Path) -> None:
        drawn.append(records[-1]["step"])
        real_plot(records, path)

    real_plot = trainer.plot_losses
    monkeypatch.setattr(trainer, "plot_losses", plot)
    # Six evaluations in a few seconds: drawing each (~0.1 s) would be a tax on every one.
    Trainer(tiny(max_iters=30, eval_interval=5), corpus_a, tmp_path / "r", progress=False).run()
    assert drawn == [30]
    assert (tmp_path / "r" / "loss.png").read_bytes().startswith(b"\x89PNG")
    # A run whose evaluations are further apart than the interval draws at each of them,
    # but the last only once, after the loop.
    drawn.clear()
    monkeypatch.setattr(trainer, "PLOT_INTERVAL_S", 0.0)
    result = Trainer(
        tiny(max_iters=30, eval_interval=10), corpus_a, tmp_path / "s", progress=False
    ).run()
    assert drawn == [10, 20, 30]
    # Where the loop's time went: the two in-loop drawings and every evaluation after the
    # first step are counted, and tokens/s over the steps alone leaves them out.
    phases = result.phase_seconds
    assert phases is not None and set(phases) == set(trainer.PHASES)
    assert phases["plot"] > 0 and phases["evaluate"] > 0 and phases["checkpoint"] > 0
    assert result.train_tokens_per_second > result.tokens_per_second


def test_best_is_linked_to_last_at_one_step_and_survives_later_saves(
    corpus_a: PreparedCorpus, tmp_path: Path
) -> None:
    """When an evaluation improves at a checkpoint step, last/ is hard-linked to best/'s
    files instead of written again; a later save of last/ replaces its files and leaves
    best/ as it was. (tests/test_resume.py resumes bit-identically from linked last/s.)"""
    run = tmp_path / "r"
    cfg = tiny(max_iters=10, eval_interval=10, checkpoint_interval=5)
    Trainer(cfg, corpus_a, run, progress=False).run()
    best, last = run / "best", run / "last"
    for name in (MODEL_FILE, STATE_FILE):
        assert os.path.samefile(best / name, last / name)
    assert read_metadata(last)["step"] == "10" and "val_loss" in read_metadata(last)
    best_bytes = (best / MODEL_FILE).read_bytes()

    model, tokenizer = load_model(last)
    with torch.no_grad():
        model.wte.weight.add_(1.0)
    save_checkpoint(last, model, tokenizer, {**load_checkpoint_state(last), "step": 11})
    assert load_checkpoint_state(last)["step"] == 11
    assert load_checkpoint_state(best)["step"] == 10
    assert (best / MODEL_FILE).read_bytes() == best_bytes
    assert not torch.equal(load_model(last)[0].wte.weight, load_model(best)[0].wte.weight)
    assert not [p.name for p in run.rglob("*.tmp")]


def test_checkpoint_writer_puts_files_in_place_and_reports_a_failed_write(
    corpus_a: PreparedCorpus, base_run: Path, tmp_path: Path
) -> None:
    """The trainer's writer finishes checkpoints on another thread: after `wait` they are
    in place (and `also` folders linked); a write that failed there is raised, not lost."""
    model, tokenizer = load_model(base_run / "last")
    state = load_checkpoint_state(base_run / "last")
    writer = CheckpointWriter()
    try:
        writer.save(tmp_path / "a", model, tokenizer, {**state, "step": 7}, also=[tmp_path / "b"])
        writer.wait()
        assert load_checkpoint_state(tmp_path / "a")["step"] == 7
        assert (tmp_path / "b" / MODEL_FILE).samefile(tmp_path / "a" / MODEL_FILE)
        (tmp_path / "c" / MODEL_FILE).mkdir(parents=True)  # nothing can be renamed over it
        writer.save(tmp_path / "c", model, tokenizer, {**state, "step": 8})
        with pytest.raises(OSError):
            writer.wait()
    finally:
        writer.close()


def test_train_result_and_generation(corpus_a: PreparedCorpus, tmp_path: Path) -> None:
    from musegpt.generation.sampling import sample_text

    result = Trainer(tiny(max_iters=20), corpus_a, tmp_path / "r", progress=False).run()
    assert result.steps == 20 and result.tokens == 20 * 8 * 32
    assert result.tokens_per_second > 0 and result.train_tokens_per_second > 0
    assert result.final_val_loss is not None and result.best_val_loss is not None
    assert result.best_val_loss <= result.final_val_loss
    model, tokenizer = load_model(tmp_path / "r" / "best")
    text = sample_text(model, tokenizer, "The ", max_new_tokens=20, seed=0)
    assert text and text == sample_text(model, tokenizer, "The ", max_new_tokens=20, seed=0)


def test_gradient_accumulation_and_dropout(corpus_a: PreparedCorpus, tmp_path: Path) -> None:
    cfg = tiny(max_iters=10, gradient_accumulation_steps=3, dropout=0.1, eval_interval=10)
    result = Trainer(cfg, corpus_a, tmp_path / "r", progress=False).run()
    assert result.tokens == 10 * 3 * 8 * 32
    assert result.final_val_loss is not None and math.isfinite(result.final_val_loss)


@torch.no_grad()
def reported_val_loss(model: GPT, corpus: PreparedCorpus, cfg: TrainConfig) -> float:
    """The validation loss as the trainer computes it (its val windows, its autocast), here
    for a model freshly loaded from a checkpoint."""
    windows = BatchSampler(
        corpus.tokens("val"), cfg.block_size, cfg.batch_size, cfg.seed + 1, split="val"
    )
    losses = []
    for _ in range(cfg.eval_iters):
        x, y = windows.next()
        with torch.autocast("cpu", torch.bfloat16, enabled=cfg.dtype == "bfloat16"):
            loss = model(x, y).loss
        assert loss is not None
        losses.append(float(loss))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_reported_val_loss_is_that_of_the_saved_weights(
    corpus_a: PreparedCorpus, tmp_path: Path, dtype: str
) -> None:
    """Each validation loss logged is that of the weights at its step, as a fresh process
    computes it from the checkpoint; so `best/` is truly the best. (In float32, evaluation
    runs through the decode-time weight copies while the trainer's fused AdamW updates the
    weights; bfloat16 autocast leaves the weights in float32.)"""
    cfg = tiny(max_iters=30, eval_interval=10, eval_iters=2, dtype=dtype)
    Trainer(cfg, corpus_a, tmp_path / "r", progress=False).run()
    logged = {r["step"]: r["val_loss"] for r in metrics(tmp_path / "r") if "val_loss" in r}
    assert len(logged) == 3 and logged[30] < logged[10] - 0.1
    for name in ("last", "best"):
        model, _ = load_model(tmp_path / "r" / name)
        assert model.wte.weight.dtype == torch.float32  # autocast leaves the weights in fp32
        step = load_checkpoint_state(tmp_path / "r" / name)["step"]
        assert reported_val_loss(model, corpus_a, cfg) == pytest.approx(logged[step], abs=1e-4)
    assert logged[load_checkpoint_state(tmp_path / "r" / "best")["step"]] == min(logged.values())


def test_existing_run_is_not_overwritten(corpus_a: PreparedCorpus, base_run: Path) -> None:
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(tiny(), corpus_a, base_run, progress=False).run()


def test_learning_rate_schedule() -> None:
    cfg = tiny(learning_rate=1.0, min_lr=0.1, warmup_iters=10, max_iters=110)
    lrs = [learning_rate_at(cfg, it) for it in range(120)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.55)  # half-way down the cosine
    assert lrs[110] == pytest.approx(0.1) and lrs[119] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert learning_rate_at(tiny(decay_lr=False, learning_rate=0.5), 50) == 0.5


def test_weight_decay_only_on_matrices(corpus_a: PreparedCorpus) -> None:
    from musegpt.train.trainer import optimizer_for

    model = GPT(tiny().gpt_config(corpus_a.tokenizer.vocab_size))
    opt = optimizer_for(model, tiny(weight_decay=0.1), torch.device("cpu"))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"])
    assert all(p.dim() < 2 for p in plain["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == model.num_parameters()


# ---------------------------------------------------------------- divergence


class NaNAfter(GPT):
    """A GPT whose loss turns NaN from its `bad_call`-th training forward on."""

    def __init__(self, *args: Any, bad_call: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.bad_call = bad_call

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, **kw: Any) -> Any:
        out: GPTOutput = super().forward(idx, targets, **kw)
        if self.training:
            self.calls += 1
            if self.calls >= self.bad_call and out.loss is not None:
                out.loss = out.loss * float("nan")
        return out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    corpus_a: PreparedCorpus, tmp_path: Path
) -> None:
    cfg = tiny(max_iters=30, checkpoint_interval=5, eval_interval=5)
    model = NaNAfter(cfg.gpt_config(corpus_a.tokenizer.vocab_size), bad_call=13)
    run = tmp_path / "r"
    with pytest.raises(TrainingDiverged, match=r"step 13.*step 10.*learning_rate") as info:
        Trainer(cfg, corpus_a, run, model=model, progress=False).run()
    assert info.value.step == 13
    assert load_checkpoint_state(run / "last")["step"] == 10
    saved, _ = load_model(run / "last")
    assert all(torch.isfinite(p).all() for p in saved.parameters())
    assert [r["step"] for r in metrics(run)][-1] == 10


def test_huge_learning_rate_is_reported_not_saved(corpus_a: PreparedCorpus, tmp_path: Path) -> None:
    cfg = tiny(max_iters=40, learning_rate=1e6, min_lr=0.0, warmup_iters=0, grad_clip=0.0)
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        Trainer(cfg, corpus_a, tmp_path / "r", progress=False).run()
    for name in ("last", "best"):
        if (tmp_path / "r" / name / "model.safetensors").exists():
            model, _ = load_model(tmp_path / "r" / name)
            assert all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------- configs


def test_config_file_and_overrides(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("n_layer: 3\nlearning_rate: 1e-3\nlr_decay_iters: null\ncompile: yes\n")
    cfg = load_config(file, ["n_layer=2", "learning_rate=3e-4", "max_iters=2e3", "bias=true"])
    assert cfg.n_layer == 2 and cfg.learning_rate == 3e-4 and cfg.max_iters == 2000
    assert cfg.bias is True and cfg.compile is True and cfg.lr_decay_iters is None
    assert parse_overrides(["--min-lr=1"]) == {"min_lr": "1"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["n_layers=2"], r"unknown setting 'n_layers'.*did you mean 'n_layer'"),
        (["n_layer=two"], r"'n_layer' must be an integer"),
        (["n_layer=2.5"], r"'n_layer' must be an integer"),
        (["learning_rate=fast"], r"'learning_rate' must be a number"),
        (["compile=maybe"], r"'compile' must be true or false"),
        (["dtype=float16"], r"'dtype' must be one of auto, float32, bfloat16"),
        (["dropout=1.5"], r"dropout must be in \[0, 1\)"),
        (["n_head=5"], r"n_embd \(384\) must be divisible by n_head \(5\)"),
        (["min_lr=1"], r"min_lr must be in \[0, learning_rate\]"),
        (["eval_iters=0"], r"eval_iters must be at least 1"),
        (["n_layer"], r"expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_bad_config_file(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("n_layer: 2\nwarmup: 10\n")
    with pytest.raises(ValueError, match=r"unknown setting 'warmup' in config file .*c\.yaml"):
        load_config(file)
    file.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_config(file)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs() -> None:
    baby = yaml.safe_load((ROOT / "configs" / "shakespeare-char.yaml").read_text())
    assert load_config(ROOT / "configs" / "shakespeare-char.yaml") == TrainConfig(
        **SHAKESPEARE_CHAR
    )
    assert baby["n_embd"] == 128 and baby["batch_size"] == 12
    big = load_config(ROOT / "configs" / "bpe-30m.yaml")
    n_params = GPT(big.gpt_config(vocab_size=8192)).num_parameters()
    assert 25e6 < n_params < 35e6


def cli() -> typer.Typer:
    from musegpt.cli.finetune import finetune_command
    from musegpt.cli.train import train_command

    app = typer.Typer()
    app.command("train")(train_command)
    app.command("finetune")(finetune_command)
    return app


def said(result: Any) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(str(result.output).split())


def test_cli_errors_are_one_line(corpus_a: PreparedCorpus, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["train", "--data", str(corpus_a.path), "--out", str(tmp_path / "r")]
    for extra, expected in (
        (["n_layers=2"], "unknown setting 'n_layers'"),
        (["block_size=100000"], "too few for block_size 100000"),
    ):
        result = runner.invoke(cli(), [*args, *extra, "--no-progress"])
        assert result.exit_code == 2, result.output
        assert expected in said(result) and "Traceback" not in said(result)
    result = runner.invoke(cli(), ["train", "--data", str(tmp_path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "not a prepared corpus" in said(result)


def test_cli_train_and_resume_extends_a_run(corpus_a: PreparedCorpus, tmp_path: Path) -> None:
    runner = CliRunner()
    file = tmp_path / "tiny.yaml"
    file.write_text(yaml.safe_dump({**TINY, "max_iters": 10, "eval_interval": 10}))
    args = ["train", "--config", str(file), "--data", str(corpus_a.path), "--out"]
    result = runner.invoke(cli(), [*args, str(tmp_path / "r"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "done: 10 steps" in said(result)
    # --resume takes the run's own settings; max_iters may grow, the shape may not change.
    resumed = runner.invoke(
        cli(), [*args, str(tmp_path / "r"), "--resume", "max_iters=15", "--no-progress"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint_state(tmp_path / "r" / "last")["step"] == 15
    refused = runner.invoke(
        cli(), [*args, str(tmp_path / "r"), "--resume", "n_embd=64", "--no-progress"]
    )
    assert refused.exit_code == 2 and "cannot resume with different settings" in said(refused)


# ---------------------------------------------------------------- fine-tuning


def test_finetune_learns_a_new_style(
    base_run: Path, corpus_b: PreparedCorpus, tmp_path: Path
) -> None:
    base, _ = load_model(base_run / "best")
    before = mean_loss(base, corpus_b)
    result = finetune(
        base_run / "best",
        corpus_b.path,
        tmp_path / "ft",
        overrides=["max_iters=40", "learning_rate=3e-3", "eval_interval=20", "threads=1"],
        progress=False,
    )
    tuned, _ = load_model(tmp_path / "ft" / "best")
    after = mean_loss(tuned, corpus_b)
    assert result.final_val_loss is not None
    assert after < before - 1.0, (before, after)
    assert tuned.config.n_embd == base.config.n_embd


def test_finetune_cli_checks_tokenizer_and_shape(
    base_run: Path, corpus_b: PreparedCorpus, tmp_path: Path
) -> None:
    other = write_corpus(
        tmp_path / "other", "xyz " * 200, "xyz " * 50, CharTokenizer.train(["xyz "])
    )
    runner = CliRunner()
    args = ["finetune", "--from", str(base_run / "best"), "--out", str(tmp_path / "ft")]
    result = runner.invoke(cli(), [*args, "--data", str(other.path), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "different tokenizer" in said(result) and "Traceback" not in said(result)
    result = runner.invoke(cli(), [*args, "--data", str(corpus_b.path), "n_layer=3"])
    assert result.exit_code == 2 and "cannot change n_layer" in said(result)
    result = runner.invoke(
        cli(),
        [
            *(*args, "--data", str(corpus_b.path), "max_iters=5", "eval_interval=5"),
            *("eval_iters=2", "threads=1", "--no-progress"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "ft" / "best")[0].config.n_layer == 2


class TrainOnlyFinalNorm:
    """A stand-in for LoRA through the adapter hook: freeze everything but ln_f."""

    def wrap(self, model: GPT) -> torch.nn.Module:
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("ln_f.")
        return model

    def export(self, module: torch.nn.Module) -> GPT:
        assert isinstance(module, GPT)
        return module


def test_adapter_hook_trains_only_chosen_parameters(
    base_run: Path, corpus_b: PreparedCorpus, tmp_path: Path
) -> None:
    base, _ = load_model(base_run / "best")
    result = finetune(
        base_run / "best",
        corpus_b.path,
        tmp_path / "ft",
        overrides={"max_iters": 10, "eval_interval": 5, "eval_iters": 2, "threads": 1},
        adapter=TrainOnlyFinalNorm(),
        progress=False,
    )
    assert result.steps == 10
    tuned, _ = load_model(tmp_path / "ft" / "last")
    for (name, p0), p1 in zip(base.named_parameters(), tuned.parameters(), strict=True):
        if name.startswith("ln_f."):
            assert not torch.equal(p0, p1), name
        else:
            assert torch.equal(p0, p1), name
    assert "model_state" in load_checkpoint_state(tmp_path / "ft" / "last")


# ---------------------------------------------------------------- slow: run with -m slow


@pytest.mark.slow
def test_auto_dtype_takes_the_faster_where_the_cpu_has_native_bf16() -> None:
    cpu = torch.device("cpu")
    slow_bf16 = {torch.bfloat16: 2.0, torch.float32: 1.0}.__getitem__
    fast_bf16 = {torch.bfloat16: 1.0, torch.float32: 2.0}.__getitem__
    native = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert resolve_dtype("auto", cpu, slow_bf16) == torch.float32
    assert resolve_dtype("auto", cpu, fast_bf16) == native
    assert resolve_dtype("float32", cpu, fast_bf16) == torch.float32
    assert resolve_dtype("bfloat16", cpu, slow_bf16) == torch.bfloat16


def test_dtype_timer_leaves_weights_gradients_and_random_state_alone() -> None:
    from musegpt.model import GPTConfig

    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.1)
    )
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = (torch.randint(0, 50, (4, 16)), torch.randint(0, 50, (4, 16)))
    rng = torch.get_rng_state()
    for dtype in (torch.float32, torch.bfloat16):
        assert pass_seconds(model, batch, repeats=2)(dtype) > 0
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_auto_dtype_is_kept_in_the_checkpoint_and_on_resume(
    corpus_a: PreparedCorpus, tmp_path: Path
) -> None:
    run = tmp_path / "r"
    Trainer(tiny(max_iters=10, eval_interval=10), corpus_a, run, progress=False).run()
    state = load_checkpoint_state(run / "last")
    assert state["dtype"] in ("float32", "bfloat16")
    # A resumed `auto` run trains in the dtype the run started with, whatever a new
    # measurement would say: pretend the run started in the other one.
    other = "float32" if state["dtype"] == "bfloat16" else "bfloat16"
    torch.save({**state, "dtype": other}, run / "last" / STATE_FILE)
    Trainer(tiny(max_iters=20, eval_interval=10), corpus_a, run, progress=False, resume=True).run()
    assert load_checkpoint_state(run / "last")["dtype"] == other


def test_compile_on_cpu(corpus_a: PreparedCorpus, tmp_path: Path) -> None:
    """torch.compile works on CPU (the first step pays the C++ build: tens of seconds)."""
    cfg = tiny(max_iters=6, compile=True, eval_interval=6, eval_iters=2)
    result = Trainer(cfg, corpus_a, tmp_path / "r", progress=False).run()
    assert result.final_val_loss is not None and math.isfinite(result.final_val_loss)


@pytest.mark.slow
def test_quickstart(tmp_path: Path) -> None:
    from musegpt.cli.train import quickstart_command

    app = typer.Typer()
    app.command()(quickstart_command)
    result = CliRunner().invoke(
        app, ["--out", str(tmp_path / "qs"), "--max-iters", "30", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "a sample from" in result.output
    assert load_model(tmp_path / "qs" / "run" / "best")[1].kind == "char"
