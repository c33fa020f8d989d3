"""LoRA adapters for the default GGUF model (musegpt/adapters): the corpus shape, the data
split, training (with exact resume), llama.cpp's converter, loading the adapter in the
llama.cpp engine, registering it, and the studio's forms and bans on the adapted model.

The adapter here is a real one, trained for a few steps on a few poems (the dequantised base
is cached after its first use); its effect on llama.cpp's logits must match the effect peft
computes, which shows the conversion kept every tensor where it belongs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from musegpt.adapters.corpus import Poem, read_documents, regular_form, verses_of
from musegpt.adapters.pipeline import split_documents
from musegpt.adapters.train import AdapterSettings, batch_rows, train_adapter
from musegpt.cli.app import app
from musegpt.engines.base import Engine
from musegpt.studio.poem import POEM_PROMPT

POEMS = [
    "《静夜思》（五言绝句）\n床前明月光，\n疑是地上霜。\n举头望明月，\n低头思故乡。",
    "《登鹳雀楼》（五言绝句）\n白日依山尽，\n黄河入海流。\n欲穷千里目，\n更上一层楼。",
    "《春晓》（五言绝句）\n春眠不觉晓，\n处处闻啼鸟。\n夜来风雨声，\n花落知多少。",
    "《相思》（五言绝句）\n红豆生南国，\n春来发几枝。\n愿君多采撷，\n此物最相思。",
    "《鹿柴》（五言绝句）\n空山不见人，\n但闻人语响。\n返景入深林，\n复照青苔上。",
    "《江雪》（五言绝句）\n千山鸟飞绝，\n万径人踪灭。\n孤舟蓑笠翁，\n独钓寒江雪。",
]
TINY = AdapterSettings(
    rank=2, alpha=4, layers=1, steps=2, learning_rate=0.05, warmup_steps=1, batch_size=2,
    seq_len=32, eval_every=2, eval_documents=0, save_every=1,  # no held-out: best = last
)  # fmt: skip


# ---------------------------------------------------------------- corpus and data


def test_poems_are_cut_into_verses_in_the_studio_prompt_format() -> None:
    verses = verses_of(["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"])
    assert verses == ["床前明月光，", "疑是地上霜。", "举头望明月，", "低头思故乡。"]
    assert regular_form(verses) == "五言绝句"
    assert regular_form(verses * 2) == "五言律诗"
    assert regular_form(["床前明月光光，", *verses[1:]]) is None  # uneven verses
    document = Poem("静夜思", verses, "五言绝句").document()
    prompt = POEM_PROMPT["zh"].format(topic="静夜思", form="五言绝句")
    assert document == prompt + "\n".join(verses)  # what the studio prompts with, then a poem


def test_a_text_file_is_split_into_training_and_held_out_documents(tmp_path: Path) -> None:
    file = tmp_path / "works.txt"
    file.write_text("\n\n".join(f"paragraph {i} of my novel." for i in range(20)), "utf-8")
    train, heldout = split_documents(file, seed=1)
    assert len(heldout) == 2 and len(train) == 18
    assert not set(train) & set(heldout)
    assert split_documents(file, seed=1) == (train, heldout)  # the same seed, the same split
    file.write_text("only one document", "utf-8")
    with pytest.raises(ValueError, match="at least two"):
        split_documents(file, seed=1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n', "utf-8")
    with pytest.raises(ValueError, match="line 2"):
        read_documents(bad)


def test_batches_are_a_function_of_the_step() -> None:
    """Resuming needs no replay: step k's documents are known from k alone."""
    every = [batch_rows(step, 5, 2, seed=3) for step in range(5)]
    assert sorted(i for rows in every for i in rows) == sorted(list(range(5)) * 2)
    assert batch_rows(3, 5, 2, seed=3) == every[3]


def test_style_distance_compares_character_trigram_profiles() -> None:
    from musegpt.adapters.evaluate import style_distance

    assert style_distance(["床前明月光"], ["床前明月光"]) == pytest.approx(0.0)
    assert style_distance(["床前明月光"], ["the sea"]) == pytest.approx(1.0)
    near = style_distance(["床前明月光，疑是霜"], ["床前明月光"])
    assert 0 < near < style_distance(["白日依山尽"], ["床前明月光"])


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="rank"):
        AdapterSettings(rank=0)
    with pytest.raises(ValueError, match="output-vocab"):
        AdapterSettings(output_vocab="some")


# ---------------------------------------------------------------- a real adapter


@pytest.fixture(scope="module")
def base_folder() -> Path:
    from musegpt.adapters.base import dequantised_base
    from musegpt.engines.default_model import default_model_path

    return dequantised_base(default_model_path(), verbose=False)


def load(base_folder: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(str(base_folder))


@pytest.fixture(scope="module")
def trained(base_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two steps, then a third after a resume (the run folder)."""
    out = tmp_path_factory.mktemp("adapter") / "run"
    torch.manual_seed(0)
    model, tokenizer = load(base_folder)
    first = train_adapter(model, tokenizer, POEMS[:4], POEMS[4:], out, TINY, report=lambda _: None)
    assert first.steps_done == 2 and (out / "checkpoint" / "state.pt").is_file()
    model, tokenizer = load(base_folder)
    more = AdapterSettings(**{**TINY.__dict__, "steps": 3})
    resumed = train_adapter(
        model, tokenizer, POEMS[:4], POEMS[4:], out, more, resume=True, report=lambda _: None
    )
    assert resumed.steps_done == 3
    assert [h["step"] for h in resumed.history if "loss" in h] == [1, 2, 3]
    model, tokenizer = load(base_folder)
    changed = AdapterSettings(**{**TINY.__dict__, "rank": 4})
    with pytest.raises(ValueError, match="rank"):
        train_adapter(model, tokenizer, POEMS[:4], POEMS[4:], out, changed, resume=True)
    return out


@pytest.fixture(scope="module")
def adapter_file(trained: Path, base_folder: Path) -> Path:
    from musegpt.adapters.convert import convert_lora

    try:
        return convert_lora(trained / "best", base_folder, trained / "adapter.gguf")
    except OSError as err:
        pytest.skip(f"llama.cpp's converter is unavailable here: {err}")


@pytest.fixture(scope="module")
def adapted(adapter_file: Path) -> Engine:
    from musegpt.engines.default_model import default_model_path
    from musegpt.engines.llama import LlamaCppEngine

    return LlamaCppEngine.load(default_model_path(), name="adapted", lora_path=adapter_file)


def test_llama_cpp_applies_the_adapter_as_peft_does(
    adapted: Engine, gemma: Engine, trained: Path, base_folder: Path
) -> None:
    """The adapter moves llama.cpp's next-token logits the way it moves the model peft
    trained (both against their own base: llama.cpp's is the quantised one)."""
    from peft import PeftModel

    ids = gemma.tokenizer.encode(POEMS[0][:20])
    base_llama = gemma.logits_source().prefill([ids]).clone()
    adapted_llama = adapted.logits_source().prefill([ids]).clone()
    model, _ = load(base_folder)
    with torch.no_grad():
        base_hf = model(torch.tensor([ids])).logits[0, -1]
        peft = PeftModel.from_pretrained(model, str(trained / "best"))
        adapted_hf = peft(torch.tensor([ids])).logits[0, -1]
    llama_shift = (adapted_llama[0] - base_llama[0]).double()
    hf_shift = (adapted_hf - base_hf).double()
    assert hf_shift.abs().max() > 0.05  # the adapter does something
    correlation = torch.corrcoef(torch.stack([llama_shift, hf_shift]))[0, 1]
    assert correlation > 0.9, correlation


def test_forms_and_bans_work_on_the_adapted_model(adapted: Engine) -> None:
    from musegpt.forms import check
    from musegpt.generation.params import SamplingParams
    from musegpt.studio import Studio

    work = Studio(adapted).poem("月夜", "wujue", seed=3, adapter="none")
    assert check(work.text, "wujue").passed
    params = SamplingParams(max_new_tokens=30, seed=1, banned=["明月"], temperature=0.0)
    text = adapted.complete("《静夜思》（五言绝句）\n床前", params)[0].text
    assert "明月" not in text


def test_models_add_registers_an_adapter(
    adapter_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from musegpt.engines.registry import find_model, open_engine

    monkeypatch.setenv("MUSEGPT_CONFIG", str(tmp_path))
    runner = CliRunner()
    added = runner.invoke(
        app, ["models", "add", "poet", "--base", "gemma3-270m", "--adapter", str(adapter_file)]
    )
    assert added.exit_code == 0, added.output
    assert find_model("poet").path == str(adapter_file)
    engine = open_engine("poet")
    assert getattr(engine, "adapter", None) == str(adapter_file)
    not_adapter = tmp_path / "x.gguf"
    shutil.copy(adapter_file, not_adapter)
    not_adapter.write_bytes(b"GGUF" + b"\0" * 64)
    refused = runner.invoke(
        app, ["models", "add", "bad", "--base", "gemma3-270m", "--adapter", str(not_adapter)]
    )
    assert refused.exit_code != 0 and "not a GGUF LoRA adapter" in refused.output
    removed = runner.invoke(app, ["models", "remove", "poet"])
    assert removed.exit_code == 0
    assert "poet" not in json.loads((tmp_path / "adapters.json").read_text())["adapters"]


# ---------------------------------------------------------------- command-line errors


def test_finetune_of_a_gguf_base_needs_lora(tmp_path: Path) -> None:
    data = tmp_path / "d.txt"
    data.write_text("a\n\nb\n", "utf-8")
    result = CliRunner().invoke(
        app,
        ["finetune", "--from", "gemma3-270m", "--data", str(data), "--out", str(tmp_path / "o")],
    )
    assert result.exit_code != 0 and "--lora" in result.output


def test_unknown_adapter_is_a_clear_error() -> None:
    result = CliRunner().invoke(
        app, ["write", "poem", "月夜", "--form", "wujue", "--adapter", "no-such-adapter"]
    )
    assert result.exit_code != 0 and "unknown adapter 'no-such-adapter'" in result.output


def test_finetune_cli_trains_a_personal_adapter_from_a_works_project(
    adapter_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole command: works project -> held-out split -> training -> GGUF LoRA ->
    perplexity before and after -> registered model (adapter_file: the converter is here)."""
    from musegpt.engines.registry import find_model
    from musegpt.store import WorksStore

    monkeypatch.setenv("MUSEGPT_CONFIG", str(tmp_path / "config"))
    db = tmp_path / "works.db"
    store = WorksStore(db)
    project = store.create_project("my poems", kind="poems", lang="zh")
    for title in ("one", "two"):
        store.create_document(int(project["id"]), title, text="\n\n".join(POEMS[:3]))
    store.close()
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["finetune", "--from", "gemma3-270m", "--lora", "--works", "my poems",
         "--works-db", str(db), "--out", str(out), "--steps", "1", "--lora-rank", "2",
         "--lora-layers", "1", "--batch-size", "2", "--seq-len", "32"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 1 and report["base_perplexity"] > 1
    assert 0 <= report["adapted_style_distance"] <= 1 and "style distance" in result.output
    assert (out / "adapter.gguf").is_file()
    assert find_model("works-my-poems").path == str((out / "adapter.gguf").resolve())


def test_the_studio_writes_chinese_poems_with_the_shipped_tang_adapter(gemma: Engine) -> None:
    from musegpt.adapters.registry import shipped_adapter
    from musegpt.forms import check
    from musegpt.studio import Studio

    assert shipped_adapter("tang") is not None  # shipped in the package
    studio = Studio(gemma)
    adapted = studio.poem("月夜", "wujue", seed=1)
    assert adapted.meta["adapter"] == "gemma3-270m:tang" and check(adapted.text, "wujue").passed
    plain = studio.poem("月夜", "wujue", seed=1, adapter="none")
    assert "adapter" not in plain.meta and plain.text != adapted.text


def test_the_shipped_adapters_work_on_the_faster_built_in_model(
    gemma: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gemma3-270m-q5` (the default with its output table re-quantised) takes the shipped
    adapters as the default does: the LoRA moves its logits as it moves the default's, a
    Chinese poem is written with `tang` unasked, and an adapter can be registered on it."""
    from musegpt.adapters.choice import adapter_choice
    from musegpt.adapters.pipeline import gguf_base_path
    from musegpt.adapters.registry import adapter_models, open_adapter_model, shipped_adapter
    from musegpt.engines.base import EngineError
    from musegpt.engines.default_model import FAST_MODEL, default_model_path
    from musegpt.engines.registry import find_model, open_engine
    from musegpt.forms import check
    from musegpt.studio import Studio

    assert gguf_base_path(FAST_MODEL) == default_model_path(verbose=False, name=FAST_MODEL)
    fast = open_engine(FAST_MODEL)
    ids = gemma.tokenizer.encode(POEMS[0][:20])
    shifts = []
    for base, plain in (("gemma3-270m", gemma), (FAST_MODEL, fast)):
        adapted = open_adapter_model(adapter_models()[f"{base}:tang"])
        before = plain.logits_source().prefill([ids])[0].clone()
        shifts.append((adapted.logits_source().prefill([ids])[0] - before).double())
    assert shifts[1].abs().max() > 0.5  # the adapter does something on the faster base
    assert torch.corrcoef(torch.stack(shifts))[0, 1] > 0.9  # and what it does on the default

    studio = Studio(fast)
    poem = studio.poem("月夜", "wujue", seed=1)
    assert poem.meta["adapter"] == f"{FAST_MODEL}:tang" and check(poem.text, "wujue").passed
    assert studio.poem("月夜", "wujue", seed=1, adapter="none").text != poem.text
    with pytest.raises(EngineError, match=f"is for gemma3-270m, not {FAST_MODEL}"):
        adapter_choice(fast, "gemma3-270m:tang")

    monkeypatch.setenv("MUSEGPT_CONFIG", str(tmp_path))
    tang = str(shipped_adapter("tang"))
    added = CliRunner().invoke(
        app, ["models", "add", "fast-poet", "--base", FAST_MODEL, "--adapter", tang]
    )
    assert added.exit_code == 0, added.output
    assert adapter_models()["fast-poet"].base == FAST_MODEL and find_model("fast-poet")
    assert getattr(open_engine("fast-poet"), "adapter", None) == tang
