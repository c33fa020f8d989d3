"""LoRA fine-tuning end to end, as README step 4 does it: a style file prepared with the
base model's tokenizer, `musegpt finetune --lora`, the merged model sampled, the adapter
saved alone. The base is a real tiny model trained here."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import mean_loss, metrics, plain_text, tiny, write_corpus
from typer.testing import CliRunner

from musegpt.cli.app import app
from musegpt.data.dataset import PreparedCorpus
from musegpt.model import load_model
from musegpt.train import Trainer
from musegpt.train.checkpoint import load_checkpoint_state

TARGETS = ("c_attn", "c_fc")  # c_proj is left alone, so it must come out unchanged
RANK = 4


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    corpus = write_corpus(folder / "corpus", plain_text(6000, 1), plain_text(1200, 2))
    # Wider and longer trained than the other tests' model: LoRA leaves the embeddings, the
    # (tied) output layer and the layer norms as they are, and the smaller model's are too
    # crude for adapters alone to fit a new style.
    cfg = tiny(n_embd=64, n_head=4, max_iters=150, eval_interval=50)
    Trainer(cfg, corpus, folder / "run", progress=False).run()
    return folder / "run" / "best"


@pytest.fixture(scope="module")
def tuned(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """README step 4 with LoRA, through the `musegpt` command line."""
    work = tmp_path_factory.mktemp("style")
    (work / "my-style.txt").write_text(cat_text(600, 3), encoding="utf-8")
    runner = CliRunner()
    prepared = runner.invoke(
        app,
        [
            *("prepare", str(work / "my-style.txt"), "--tokenizer-from", str(base)),
            *("--out", str(work / "data" / "style")),
        ],
    )
    assert prepared.exit_code == 0, prepared.output
    result = runner.invoke(
        app,
        [
            *("finetune", "--from", str(base), "--data", str(work / "data" / "style")),
            *("--out", str(work / "runs" / "style"), "--lora", "--lora-rank", str(RANK)),
            *("--lora-alpha", "8", "--lora-targets", ",".join(TARGETS), "--save-adapter"),
            *("--no-progress", "max_iters=60", "eval_interval=20", "eval_iters=5", "threads=1"),
            # a higher rate than LoRA's default (1e-3): 60 steps must show the style
            *("learning_rate=1e-2", "min_lr=1e-3", "warmup_iters=5"),
        ],
    )
    assert result.exit_code == 0, result.output
    return work / "runs" / "style"


def cat_text(n_sentences: int, seed: int) -> str:
    """The new style: two sentences over and over, in words the base model knows."""
    rng = random.Random(seed)
    sentences = ["The cat sat on the mat.", "The dog sat on the hat."]
    return " ".join(rng.choice(sentences) for _ in range(n_sentences))


def style_corpus(run: Path) -> PreparedCorpus:
    return PreparedCorpus.open(run.parent.parent / "data" / "style")


def test_lora_learns_the_style_and_merges_into_a_plain_model(base: Path, tuned: Path) -> None:
    evals = [r["val_loss"] for r in metrics(tuned) if "val_loss" in r]
    assert len(evals) == 3 and evals[-1] < evals[0]
    before, _ = load_model(base)
    after, tokenizer = load_model(tuned / "best")  # the ordinary loader: a plain GPT
    corpus = style_corpus(tuned)
    assert mean_loss(after, corpus) < mean_loss(before, corpus) - 0.2
    assert not [k for k in load_file(str(tuned / "best" / "model.safetensors")) if "lora" in k]

    # The merged model samples from the command line, in the new style.
    def sample(model: Path) -> str:
        command = ["sample", str(model), "--prompt", "The", "--max-new-tokens", "120"]
        sampled = CliRunner().invoke(app, [*command, "--seed", "1", "--temperature", "0.5"])
        assert sampled.exit_code == 0, sampled.output
        return str(sampled.output)

    assert sample(tuned / "best").count("on the") > sample(base).count("on the")
    assert tokenizer.to_dict() == style_corpus(tuned).tokenizer.to_dict()


def test_only_the_adapters_were_trained(base: Path, tuned: Path) -> None:
    before = load_file(str(base / "model.safetensors"))
    after = load_file(str(tuned / "last" / "model.safetensors"))
    assert before.keys() == after.keys()
    for key, value in before.items():
        adapted = key.endswith(".weight") and key.split(".")[-2] in TARGETS
        assert torch.equal(value, after[key]) != adapted, key

    # The optimizer held the LoRA matrices and nothing else: A (rank x in), B (out x rank)
    # for each of the 2 target layers in each of the 2 blocks.
    state = load_checkpoint_state(tuned / "last")
    shapes = [tuple(s["exp_avg"].shape) for s in state["optimizer"]["state"].values()]
    assert len(shapes) == 2 * 2 * 2 and all(RANK in shape for shape in shapes)
    trained = [k for k in state["model_state"] if "lora_" in k]
    assert len(trained) == len(shapes)


def test_adapter_saved_alone_is_small_and_reproduces_the_merged_model(
    base: Path, tuned: Path
) -> None:
    from peft import PeftModel

    adapter = tuned / "best" / "adapter"
    size = (adapter / "adapter_model.safetensors").stat().st_size
    assert size < (tuned / "best" / "model.safetensors").stat().st_size / 4
    gpt, _ = load_model(base)
    merged = PeftModel.from_pretrained(gpt, str(adapter)).merge_and_unload()
    reference, _ = load_model(tuned / "best")
    x = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(merged(x).logits, reference(x).logits)


def test_lora_run_resumes_as_lora_and_options_need_lora(base: Path, tuned: Path) -> None:
    runner = CliRunner()
    data = str(style_corpus(tuned).path)
    common = ["finetune", "--from", str(base), "--data", data, "--out", str(tuned)]
    resumed = runner.invoke(app, [*common, "--resume", "--no-progress", "max_iters=70"])
    assert resumed.exit_code == 0, resumed.output
    state = load_checkpoint_state(tuned / "last")
    assert state["step"] == 70 and any("lora_" in k for k in state["model_state"])

    changed = runner.invoke(app, [*common, "--resume", "--lora", "--lora-rank", "2"])
    assert changed.exit_code == 2 and "resume with the same settings" in changed.output
    stray = runner.invoke(app, [*common[:-1], "elsewhere", "--lora-rank", "2"])
    assert stray.exit_code == 2 and "--lora-rank only apply with --lora" in stray.output
    unknown = runner.invoke(app, [*common[:-1], "elsewhere", "--lora", "--lora-targets", "wte"])
    assert unknown.exit_code == 2 and "unknown lora target(s) wte" in unknown.output
