"""The default model's output table, re-quantised once in the cache (default_model.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFWriter

from musegpt.engines import default_model
from musegpt.engines.base import Engine, EngineError
from musegpt.engines.default_model import (
    DEFAULT_MODEL,
    FAST_MODEL,
    TABLE,
    TABLE_TYPE,
    assembled_model_path,
    default_model_path,
    requantise_table,
    requantised_model_path,
)
from musegpt.engines.gguf_index import read_index
from musegpt.engines.registry import list_models, open_engine

KL_MOST = 0.1  # nats; the mean over English text is 0.03 (docs/benchmarks.md)


def test_the_fast_model_is_the_default_with_only_its_table_requantised(
    gemma: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSEGPT_CONFIG", str(tmp_path))
    assert {DEFAULT_MODEL, FAST_MODEL} <= {entry.name for entry in list_models()}
    fast = open_engine(FAST_MODEL)
    derived, exact = Path(fast.path), assembled_model_path(verbose=False)
    assert derived == default_model_path(verbose=False, name=FAST_MODEL)
    assert gemma.path == str(exact) != str(derived)  # the default stays the package's file
    before, after = read_index(exact), read_index(derived)
    assert before.tensors.keys() == after.tensors.keys()
    types = (before.tensors[TABLE].type.name, after.tensors[TABLE].type.name)
    assert types == ("Q8_0", TABLE_TYPE)
    changed = [
        name
        for name, entry in before.tensors.items()
        if entry.type != after.tensors[name].type
        or not np.array_equal(before.data(name), after.data(name))
    ]
    assert changed == [TABLE]
    assert derived.stat().st_size < exact.stat().st_size - 40_000_000  # the table: 178 -> 126 MB
    prompt = "The lighthouse keeper climbed the stairs one last time, and"
    ids = gemma.tokenize(prompt)
    p = torch.log_softmax(gemma.next_token_logits(ids).float().view(-1), -1)
    q = torch.log_softmax(fast.next_token_logits(ids).float().view(-1), -1)
    assert not torch.equal(p, q)  # another table: other numbers …
    # … the same three likeliest words here (the first two are near a tie: 0.153 and 0.149,
    # so which leads differs between CPUs' kernels)
    assert set(p.topk(3).indices.tolist()) == set(q.topk(3).indices.tolist())
    assert float((p.exp() * (p - q)).sum()) < KL_MOST  # and a near distribution


def test_a_table_type_that_does_not_fit_is_refused_before_llama_cpp(tmp_path: Path) -> None:
    source = tmp_path / "table.gguf"  # a GGUF with Gemma's table shape, 4 rows of 640
    writer = GGUFWriter(source, "gemma3")
    writer.add_tensor(TABLE, np.zeros((4, 640), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    # llama.cpp would abort the whole process: Gemma's rows of 640 are not whole K-blocks.
    with pytest.raises(EngineError, match="rows of 640 values do not split into Q6_K's blocks"):
        requantise_table(source, tmp_path / "out.gguf", "Q6_K")
    with pytest.raises(EngineError, match="not a GGML quantisation type"):
        requantise_table(source, tmp_path / "out.gguf", "Q9")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF and then nothing")
    with pytest.raises(EngineError, match="could not read the GGUF model"):
        requantise_table(junk, tmp_path / "out.gguf", "Q5_0")
    assert not (tmp_path / "out.gguf").exists()


def test_the_table_is_derived_once_and_again_when_its_source_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stamp's logic, with a stand-in quantiser that only records what it was asked."""
    calls: list[str] = []

    def quantise(source: Path, target: Path, table_type: str) -> None:
        calls.append(table_type)
        target.write_bytes(source.read_bytes() + table_type.encode())

    monkeypatch.setattr(default_model, "requantise_table", quantise)
    source = tmp_path / "model.gguf"
    source.write_bytes(b"the package's model")
    derived = requantised_model_path(source, "Q5_0", verbose=False)
    assert requantised_model_path(source, "Q5_0", verbose=False) == derived
    assert calls == ["Q5_0"] and derived.read_bytes() == b"the package's modelQ5_0"
    source.write_bytes(b"the package's model, assembled again")
    requantised_model_path(source, "Q5_0", verbose=False)
    assert calls == ["Q5_0", "Q5_0"]
    assert derived.read_bytes() == b"the package's model, assembled againQ5_0"

    def failing(source: Path, target: Path, table_type: str) -> None:
        target.write_bytes(b"half a model")
        raise EngineError("llama.cpp could not re-quantise")

    monkeypatch.setattr(default_model, "requantise_table", failing)
    derived.unlink()
    with pytest.raises(EngineError, match="could not re-quantise"):
        requantised_model_path(source, "Q5_0", verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf", derived.name + ".derived"]
