"""Hugging Face GPT-2 interoperability: exported folders load with `transformers` and give
MuseGPT's logits and token ids; GPT-2 checkpoints built by `transformers` import exactly.

Everything is built locally from tiny random models: nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from tokenizers import ByteLevelBPETokenizer
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2Tokenizer
from typer.testing import CliRunner

import musegpt
from musegpt.api import MuseModel
from musegpt.cli.hf import export_hf_command, import_hf_command
from musegpt.cli.sample import sample_command
from musegpt.model import GPT, GPTConfig, load_model, save_model
from musegpt.model.hf_gpt2 import (
    HFInteropError,
    export_gpt2,
    export_model_file,
    import_gpt2,
    import_to_model_file,
    musegpt_config,
)
from musegpt.tokenizer import EOT, BPETokenizer, CharTokenizer, Tokenizer

TEXTS = [
    "Shall I compare thee to a summer's day? Thou art more lovely and more temperate.\n",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n",
    "🎉🎶 café naïve — “quotes” and the end.<|endoftext|>Another poem begins here.\n",
] * 10

PROBES = [
    "Shall I compare thee to a summer's day?",
    "床前明月光，疑是地上霜。",
    "🎉 party 🎶 emoji 👩‍👩‍👧",
    f"first poem{EOT}second poem{EOT}",
    "  leading spaces\n\n\ttabs and\r\nnewlines",
    "unseen: ÆØÅ ß 한국어 Ω \x00",
    "",
]
TOLERANCE = 1e-4
BLOCK_SIZE = 64  # the reference workflow generates up to 50 tokens


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(TEXTS, vocab_size=320)


@pytest.fixture(scope="module")
def char() -> CharTokenizer:
    return CharTokenizer.train(TEXTS)


def tiny_gpt(
    vocab_size: int, positional: str = "learned", bias: bool = True, activation: str = "gelu_tanh"
) -> GPT:
    """A tiny random model whose every weight (biases and LayerNorms too) matters."""
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=vocab_size,
        block_size=BLOCK_SIZE,
        n_layer=2,
        n_head=2,
        n_embd=32,
        positional=positional,  # type: ignore[arg-type]
        bias=bias,
        activation=activation,  # type: ignore[arg-type]
    )
    model = GPT(config)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def run_cli(*args: str) -> Any:
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    app.command("export-hf")(export_hf_command)
    app.command("import-hf")(import_hf_command)
    app.command("sample")(sample_command)
    return CliRunner().invoke(app, list(args))


def load_hf(folder: Path) -> Any:
    model: Any = GPT2LMHeadModel.from_pretrained(folder)
    return model.eval()


def max_logit_difference(hf: Any, model: GPT, ids: list[int]) -> float:
    x = torch.tensor([ids])
    with torch.no_grad():
        return float((hf(x).logits - model(x).logits).abs().max())


def same_tensors(a: Path, b: Path) -> bool:
    sa, sb = load_file(str(a)), load_file(str(b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------
# Export


@pytest.mark.parametrize(
    ("positional", "bias"),
    [("learned", True), ("learned", False), ("sinusoidal", True), ("sinusoidal", False)],
)
def test_export_gives_the_same_logits(
    tmp_path: Path, bpe: BPETokenizer, positional: str, bias: bool
) -> None:
    model = tiny_gpt(bpe.vocab_size, positional, bias)
    export_gpt2(model, bpe, tmp_path)
    hf = load_hf(tmp_path)
    ids = bpe.encode(" ".join(PROBES))[:BLOCK_SIZE]
    assert len(ids) == BLOCK_SIZE  # every position, the last included
    assert max_logit_difference(hf, model, ids) <= TOLERANCE
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # still tied


def test_exported_config_is_gpt2(tmp_path: Path, bpe: BPETokenizer) -> None:
    model = tiny_gpt(bpe.vocab_size)
    model.config.dropout = 0.1  # the export carries it into all three GPT-2 dropout rates
    export_gpt2(model, bpe, tmp_path)
    config = GPT2Config.from_pretrained(tmp_path)
    assert config.model_type == "gpt2"
    assert config.architectures == ["GPT2LMHeadModel"]
    assert config.n_positions == BLOCK_SIZE
    assert (config.n_layer, config.n_head, config.n_embd) == (2, 2, 32)
    assert config.vocab_size == bpe.vocab_size
    assert config.activation_function == "gelu_new"
    assert config.tie_word_embeddings is True
    assert config.bos_token_id == config.eos_token_id == bpe.eot_id
    assert config.layer_norm_epsilon == 1e-5
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.1
    assert {p.name for p in tmp_path.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
    }
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "GPT2LMHeadModel" in card and "MuseGPT" in card


def test_exported_bpe_tokenizer_gives_our_ids(tmp_path: Path, bpe: BPETokenizer) -> None:
    export_gpt2(tiny_gpt(bpe.vocab_size), bpe, tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.is_fast
    assert tok.eos_token == tok.bos_token == EOT and tok.eos_token_id == bpe.eot_id
    for text in PROBES:
        ids = bpe.encode(text)
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == text
    assert tok.encode(EOT) == [bpe.eot_id]


def test_exported_char_tokenizer_gives_our_ids(tmp_path: Path, char: CharTokenizer) -> None:
    model = tiny_gpt(char.vocab_size)
    export_gpt2(model, char, tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    hf = load_hf(tmp_path)
    assert tok.is_fast and tok.eos_token_id == char.eot_id
    assert len(tok) == char.vocab_size
    for text in PROBES:
        ids = char.encode(text)
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == text
    unseen = char.encode("Ω")  # not in the training text: byte fallback
    assert len(unseen) == 2 and tok.encode("Ω") == unseen
    ids = char.encode("".join(PROBES))[:BLOCK_SIZE]
    assert max_logit_difference(hf, model, ids) <= TOLERANCE


@pytest.fixture(scope="module")
def exported_char(tmp_path_factory: pytest.TempPathFactory, char: CharTokenizer) -> Any:
    out = tmp_path_factory.mktemp("char-export")
    export_gpt2(tiny_gpt(char.vocab_size), char, out)
    return AutoTokenizer.from_pretrained(out)


@settings(max_examples=150, deadline=None)
@given(
    text=st.text()
    | st.lists(st.sampled_from([*PROBES, EOT, "<|end", "<0x41>", "e\u0301"])).map("".join)
)
def test_exported_char_tokenizer_matches_on_any_text(
    exported_char: Any, char: CharTokenizer, text: str
) -> None:
    ids = char.encode(text)
    assert exported_char.encode(text) == ids
    assert exported_char.decode(ids) == text


def test_reference_workflow_runs_on_an_export(tmp_path: Path, bpe: BPETokenizer) -> None:
    model = tiny_gpt(bpe.vocab_size)
    export_gpt2(model, bpe, tmp_path)
    out_dir = str(tmp_path)
    prompt = "Shall I compare thee"

    model_hf: Any = GPT2LMHeadModel.from_pretrained(out_dir)
    tok: Any = AutoTokenizer.from_pretrained(out_dir)
    ids = tok.encode(prompt, return_tensors="pt")
    out = model_hf.generate(ids, max_length=50, num_return_sequences=1, no_repeat_ngram_size=2)
    text = tok.decode(out[0], skip_special_tokens=True)

    assert text.startswith(prompt) and len(text) > len(prompt)
    # Greedy with the same n-gram ban in MuseGPT picks the same tokens.
    [ours] = MuseModel(model, bpe).complete(
        prompt,
        temperature=0.0,
        no_repeat_ngram_size=2,
        max_new_tokens=50 - ids.shape[1],
    )
    assert len(ours.token_ids) >= 10
    assert out[0, ids.shape[1] :].tolist()[: len(ours.token_ids)] == ours.token_ids


def test_rope_model_is_refused_with_the_reason(tmp_path: Path, bpe: BPETokenizer) -> None:
    with pytest.raises(HFInteropError, match="rotary") as err:
        export_gpt2(tiny_gpt(bpe.vocab_size, "rope"), bpe, tmp_path / "out")
    assert "learned" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_non_empty_folder(tmp_path: Path, bpe: BPETokenizer) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(HFInteropError, match="not empty"):
        export_gpt2(tiny_gpt(bpe.vocab_size), bpe, tmp_path)
    export_gpt2(tiny_gpt(bpe.vocab_size), bpe, tmp_path, overwrite=True)
    assert (tmp_path / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------
# Import


def gpt2_checkpoint(folder: Path, **config: Any) -> tuple[Any, Any]:
    """A tiny random GPT-2 and a trained byte-level BPE tokenizer, saved by `transformers`."""
    raw = folder / "raw-tokenizer"
    raw.mkdir(parents=True)
    trained = ByteLevelBPETokenizer()
    trained.train_from_iterator(TEXTS, vocab_size=300, special_tokens=[EOT], show_progress=False)
    trained.save_model(str(raw))
    tok = GPT2Tokenizer(vocab=str(raw / "vocab.json"), merges=str(raw / "merges.txt"))
    torch.manual_seed(1)
    hf_config = GPT2Config(
        vocab_size=len(tok),
        n_positions=48,
        n_embd=24,
        n_layer=2,
        n_head=3,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        **config,
    )
    hf: Any = GPT2LMHeadModel(hf_config)
    with torch.no_grad():
        for param in hf.parameters():
            param.add_(0.1 * torch.randn_like(param))
    hf.eval()
    out = folder / "checkpoint"
    hf.save_pretrained(out)
    tok.save_pretrained(out)
    return hf, tok


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    root = tmp_path_factory.mktemp("gpt2")
    hf, tok = gpt2_checkpoint(root)
    return root / "checkpoint", hf, tok


def test_import_gives_the_same_logits_and_ids(checkpoint: tuple[Path, Any, Any]) -> None:
    folder, hf, tok = checkpoint
    model, tokenizer = import_gpt2(folder)
    assert isinstance(tokenizer, BPETokenizer)
    assert model.config.positional == "learned" and model.config.bias
    assert model.config.block_size == 48 and model.config.dropout == hf.config.resid_pdrop
    assert tokenizer.eot_id == tok.eos_token_id == tok.convert_tokens_to_ids(EOT)
    for text in PROBES:
        assert tokenizer.encode(text) == tok.encode(text), text
    ids = tokenizer.encode(" ".join(PROBES))[:48]
    assert max_logit_difference(hf, model, ids) <= TOLERANCE


def test_import_from_vocab_and_merges_and_pytorch_bin(
    tmp_path: Path, checkpoint: tuple[Path, Any, Any]
) -> None:
    """The older layout: pytorch_model.bin with GPT-2's original (prefix-less) names, and a
    tokenizer given only as vocab.json + merges.txt."""
    folder, hf, tok = checkpoint
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text((folder / "config.json").read_text())
    state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()}
    del state["lm_head.weight"]
    torch.save(state, legacy / "pytorch_model.bin")
    for name in ("vocab.json", "merges.txt"):
        (legacy / name).write_bytes((folder.parent / "raw-tokenizer" / name).read_bytes())
    model, tokenizer = import_gpt2(legacy)
    reference = AutoTokenizer.from_pretrained(legacy)
    for text in PROBES:
        assert tokenizer.encode(text) == reference.encode(text) == tok.encode(text), text
    ids = tokenizer.encode(" ".join(PROBES))[:48]
    assert max_logit_difference(hf, model, ids) <= TOLERANCE


def test_imported_model_samples_and_trains(
    tmp_path: Path, checkpoint: tuple[Path, Any, Any]
) -> None:
    folder, _, _ = checkpoint
    file = import_to_model_file(folder, tmp_path / "imported")
    text = musegpt.load(file).generate("Shall I", max_new_tokens=8, temperature=0.0)
    assert text.strip()
    greedy = ("--max-new-tokens", "8", "--temperature", "0")
    result = run_cli("sample", str(file), "--prompt", "Shall I", *greedy)
    assert result.exit_code == 0, result.output
    assert result.output == "Shall I" + text + "\n"  # the CLI streams what the library writes

    model, tokenizer = load_model(file)
    model.train()
    ids = torch.tensor([tokenizer.encode(TEXTS[0])[:33]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        out = model(ids[:, :-1], ids[:, 1:])
        assert out.loss is not None
        losses.append(out.loss.item())
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0]


def test_imported_model_finetunes_and_exports_again(
    tmp_path: Path, checkpoint: tuple[Path, Any, Any]
) -> None:
    from musegpt.train.finetune import finetune

    folder, _, _ = checkpoint
    file = import_to_model_file(folder, tmp_path / "imported")
    _, tokenizer = load_model(file)
    # A prepared corpus, written by hand to the contract in musegpt/data/dataset.py.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    ids = np.array([i for t in TEXTS for i in [*tokenizer.encode(t), tokenizer.eot_id]], np.uint16)
    ids.tofile(corpus / "train.bin")
    ids[:200].tofile(corpus / "val.bin")
    (corpus / "tokenizer.json").write_text(tokenizer.to_json(), encoding="utf-8")
    splits = {
        "train": {"file": "train.bin", "tokens": len(ids)},
        "val": {"file": "val.bin", "tokens": 200},
    }
    (corpus / "manifest.json").write_text(json.dumps({"dtype": "uint16", "splits": splits}))
    settings = ["max_iters=2", "eval_interval=2", "eval_iters=1", "batch_size=2", "device=cpu"]
    result = finetune(file, corpus, tmp_path / "run", overrides=settings, progress=False)
    assert result.steps == 2
    tuned = next((tmp_path / "run").rglob("model.safetensors"))
    export_model_file(tuned, tmp_path / "hf")
    assert load_hf(tmp_path / "hf").config.n_positions == 48


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_export_import_export_is_identical(
    tmp_path: Path, bpe: BPETokenizer, char: CharTokenizer, kind: str
) -> None:
    tokenizer: Tokenizer = bpe if kind == "bpe" else char
    first, second = tmp_path / "first", tmp_path / "second"
    export_gpt2(tiny_gpt(tokenizer.vocab_size, "sinusoidal"), tokenizer, first)
    model, imported = import_gpt2(first)
    assert type(imported) is type(tokenizer) and imported.to_dict() == tokenizer.to_dict()
    file = save_model(tmp_path / "muse", model, imported)
    reloaded, retokenizer = load_model(file)
    export_gpt2(reloaded, retokenizer, second)
    assert same_tensors(first / "model.safetensors", second / "model.safetensors")
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        assert (first / name).read_text() == (second / name).read_text(), name


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("activation_function", "relu"),
        ("scale_attn_by_inverse_layer_idx", True),
        ("reorder_and_upcast_attn", True),
        ("n_inner", 3 * 24),
        ("scale_attn_weights", False),
        ("add_cross_attention", True),
    ],
)
def test_unsupported_gpt2_settings_are_named(setting: str, value: Any) -> None:
    config = GPT2Config(n_embd=24, n_head=3, n_layer=1, **{setting: value})
    with pytest.raises(HFInteropError, match=setting):
        musegpt_config(config)


def test_supported_variants_are_accepted() -> None:
    for extra in ({"n_inner": 96}, {"activation_function": "gelu_pytorch_tanh"}):
        assert musegpt_config(GPT2Config(n_embd=24, n_head=3, n_layer=1, **extra)).n_embd == 24
    exact = GPT2Config(n_embd=24, n_head=3, n_layer=1, activation_function="gelu")
    assert musegpt_config(exact).activation == "gelu"


def test_exact_gelu_model_exports_with_the_same_logits(tmp_path: Path, bpe: BPETokenizer) -> None:
    """A model with the exact GELU (nanoGPT's) goes out as activation_function "gelu" and
    computes the same logits there; the tanh GELU would differ by more than the tolerance."""
    model = tiny_gpt(bpe.vocab_size, activation="gelu")
    export_gpt2(model, bpe, tmp_path)
    assert GPT2Config.from_pretrained(tmp_path).activation_function == "gelu"
    hf = load_hf(tmp_path)
    ids = bpe.encode(" ".join(PROBES))[:BLOCK_SIZE]
    assert max_logit_difference(hf, model, ids) <= TOLERANCE
    assert import_gpt2(tmp_path)[0].config.activation == "gelu"


def test_untied_output_layer_is_refused(tmp_path: Path) -> None:
    hf, _ = gpt2_checkpoint(tmp_path, tie_word_embeddings=False)
    assert not torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)
    with pytest.raises(HFInteropError, match="tie_word_embeddings"):
        import_gpt2(tmp_path / "checkpoint")


def test_broken_folders_give_clear_errors(
    tmp_path: Path, checkpoint: tuple[Path, Any, Any]
) -> None:
    folder, _, _ = checkpoint
    with pytest.raises(HFInteropError, match="no checkpoint folder"):
        import_gpt2(tmp_path / "nowhere")
    with pytest.raises(HFInteropError, match=r"no config\.json"):
        import_gpt2(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(HFInteropError, match="no weights"):
        import_gpt2(broken)
    (broken / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(HFInteropError, match="no tokenizer"):
        import_gpt2(broken)
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(HFInteropError, match="cannot read the tokenizer"):
        import_gpt2(broken)
    (broken / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(HFInteropError, match="only GPT-2"):
        import_gpt2(broken)


# ---------------------------------------------------------------------------------------------
# Command line


def test_cli_export_and_import(tmp_path: Path, char: CharTokenizer) -> None:
    model = tiny_gpt(char.vocab_size)
    file = save_model(tmp_path / "muse", model, char)
    result = run_cli("export-hf", str(file), str(tmp_path / "hf"))
    assert result.exit_code == 0, result.output
    assert "exported" in result.output
    result = run_cli("import-hf", str(tmp_path / "hf"), str(tmp_path / "back.safetensors"))
    assert result.exit_code == 0, result.output
    back, tokenizer = load_model(tmp_path / "back.safetensors")
    ids = char.encode(PROBES[1])
    with torch.no_grad():
        assert torch.allclose(back(torch.tensor([ids])).logits, model(torch.tensor([ids])).logits)
    assert tokenizer.to_dict() == char.to_dict()


def assert_one_red_line(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    # One message; rich may wrap it to the (narrow, simulated) terminal's width.
    message = " ".join(result.stderr.split())
    assert message.startswith("error:") and message.count("error:") == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in message


def test_cli_errors_are_one_line(tmp_path: Path, bpe: BPETokenizer) -> None:
    assert_one_red_line(
        run_cli("import-hf", str(tmp_path / "missing"), str(tmp_path / "out")),
        "no checkpoint folder",
    )
    assert_one_red_line(
        run_cli("export-hf", str(tmp_path / "missing"), str(tmp_path / "out")), "no MuseGPT model"
    )
    rope = save_model(tmp_path / "rope", tiny_gpt(bpe.vocab_size, "rope"), bpe)
    assert_one_red_line(run_cli("export-hf", str(rope), str(tmp_path / "out")), "rotary")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "activation_function": "relu"})
    )
    (bad / "model.safetensors").write_bytes(b"")
    assert_one_red_line(
        run_cli("import-hf", str(bad), str(tmp_path / "out")), "activation_function"
    )
