"""One engine interface, three backends: the same decoder gives the same text on the same
weights whichever backend computes the logits; the registry names and opens models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from musegpt.engines.base import EngineError
from musegpt.engines.hf import HFEngine
from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.engines.registry import (
    add_model,
    detect_backend,
    find_model,
    list_models,
    open_engine,
    remove_model,
)
from musegpt.generation.params import SamplingParams
from musegpt.model import GPT, GPTConfig, save_model
from musegpt.model.hf_gpt2 import export_gpt2
from musegpt.tokenizer import BPETokenizer

TEXTS = [
    "The moon rose over the quiet harbour and the boats slept.\n",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n",
    "She opened the door, and the sea wind came in with the gulls.\n",
] * 8


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[MuseGPTEngine, Path, Path]:
    """A tiny random GPT saved as a MuseGPT file and exported as a HF GPT-2 folder."""
    folder = tmp_path_factory.mktemp("engines")
    tokenizer = BPETokenizer.train(TEXTS, vocab_size=300)
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=48, n_layer=2, n_head=2, n_embd=32
    )
    model = GPT(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.2 * torch.randn_like(param))
    muse_file = save_model(folder / "muse", model, tokenizer)
    export_gpt2(model, tokenizer, folder / "hf")
    return MuseGPTEngine(model, tokenizer), muse_file, folder / "hf"


def test_hf_backend_matches_musegpt_token_for_token(
    models: tuple[MuseGPTEngine, Path, Path],
) -> None:
    muse, _, hf_folder = models
    hf = HFEngine.load(hf_folder)
    assert hf.tokenizer.vocab_size == muse.tokenizer.vocab_size
    # Both report the separator as their one special token, and as the stop.
    eot = {muse.tokenizer.eot_id}
    assert hf.tokenizer.special_ids == muse.tokenizer.special_ids == eot
    assert hf.tokenizer.stop_ids == muse.tokenizer.stop_ids == eot
    prompt = "The moon rose over 明月"
    assert hf.tokenize(prompt) == muse.tokenize(prompt)
    ids = muse.tokenize(prompt)
    assert torch.allclose(hf.next_token_logits(ids), muse.next_token_logits(ids), atol=1e-4)
    for params in (
        SamplingParams(temperature=0, max_new_tokens=30),
        SamplingParams(temperature=0.9, top_k=20, seed=3, max_new_tokens=30),
        # generation past the 48-token window slides the same way in both
        SamplingParams(temperature=0, max_new_tokens=80),
    ):
        [ours] = muse.complete(prompt, params)
        [theirs] = hf.complete(prompt, params)
        assert theirs.token_ids == ours.token_ids
        assert theirs.text == ours.text


def test_one_row_backends_split_n_and_prompts_in_order(
    models: tuple[MuseGPTEngine, Path, Path],
) -> None:
    _, _, hf_folder = models
    hf = HFEngine.load(hf_folder)
    params = SamplingParams(temperature=1.0, n=2, seed=5, max_new_tokens=12)
    first = hf.complete(["The moon", "She opened"], params)
    assert [c.index for c in first] == [0, 1, 2, 3]
    assert [c.prompt_index for c in first] == [0, 0, 1, 1]
    again = hf.complete(["The moon", "She opened"], params)
    assert [c.text for c in again] == [c.text for c in first]
    streamed: dict[int, str] = {}
    for delta in hf.stream_deltas(["The moon", "She opened"], params):
        streamed[delta.index] = streamed.get(delta.index, "") + delta.text
    assert [streamed[i] for i in range(4)] == [c.text for c in first]
    # Sample s is seeded seed + s, wrapping within 64 bits: the largest seed is no error.
    last = hf.complete("The moon", params.model_copy(update={"seed": 2**64 - 1}))
    wrapped = hf.complete("The moon", params.model_copy(update={"seed": 0, "n": 1}))
    assert last[1].text == wrapped[0].text


def test_constraints_apply_on_every_backend(models: tuple[MuseGPTEngine, Path, Path]) -> None:
    muse, _, hf_folder = models
    hf = HFEngine.load(hf_folder)
    free = muse.generate("The", temperature=0, max_new_tokens=30)
    word = free.split()[0] if free.split() else free[:2]
    for engine in (muse, hf):
        text = engine.generate("The", temperature=0, max_new_tokens=30, banned=[word])
        assert word not in text


def test_registry_adds_lists_opens_and_removes(
    models: tuple[MuseGPTEngine, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSEGPT_CONFIG", str(tmp_path / "config"))
    _, muse_file, hf_folder = models
    add_model("tiny", muse_file.parent)
    add_model("tiny-hf", hf_folder)
    names = {e.name: e for e in list_models()}
    assert names["gemma3-270m"].source == "default"
    assert names["tiny"].backend == "musegpt" and names["tiny-hf"].backend == "transformers"
    assert isinstance(open_engine("tiny"), MuseGPTEngine)
    assert isinstance(open_engine("tiny-hf"), HFEngine)
    assert isinstance(open_engine(str(muse_file)), MuseGPTEngine)  # a path works too
    remove_model("tiny")
    with pytest.raises(EngineError, match="unknown model 'tiny'"):
        find_model("tiny")


def test_bad_models_give_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSEGPT_CONFIG", str(tmp_path / "config"))
    with pytest.raises(EngineError, match="does not exist"):
        add_model("ghost", tmp_path / "nowhere.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(EngineError, match="not a GGUF file"):
        open_engine(str(junk))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(EngineError, match="not a model MuseGPT can read"):
        detect_backend(text)
    broken = tmp_path / "broken" / "model.safetensors"
    broken.parent.mkdir()
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(EngineError):
        open_engine(str(broken.parent))
    with pytest.raises(EngineError, match="not allowed"):
        add_model("bad name!", broken.parent)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "models.json").write_text("{ not json")
    with pytest.raises(EngineError, match="unreadable"):
        list_models()
