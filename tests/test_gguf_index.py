"""`read_index` reads what gguf's own reader reads (the fields, each array's length and the
tensor table), without building the arrays, and says clearly what is wrong with a file it
cannot read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import quantize

from musegpt.engines.gguf_index import GGUFFormatError, read_index


def write_model(path: Path, alignment: int | None) -> None:
    writer = GGUFWriter(path, "gemma3")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    writer.add_string("general.type", "adapter")
    writer.add_uint32("gemma3.block_count", 18)
    writer.add_float32("gemma3.rope.freq_base", 10000.0)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_array("tokenizer.ggml.tokens", ["<pad>", "a", "bc", "中文", ""] * 50)
    writer.add_array("tokenizer.ggml.scores", [0.5] * 250)
    rng = np.random.default_rng(0)
    table = rng.standard_normal((8, 64)).astype(np.float32)
    writer.add_tensor("token_embd.weight", quantize(table, GGMLQuantizationType.Q8_0),
                      raw_dtype=GGMLQuantizationType.Q8_0)  # fmt: skip
    writer.add_tensor("blk.0.attn_norm.weight", rng.standard_normal(64).astype(np.float32))
    writer.add_tensor("blk.0.ffn_up.weight", rng.standard_normal((3, 64)).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("alignment", [None, 64])
def test_the_index_reads_what_ggufs_reader_reads(tmp_path: Path, alignment: int | None) -> None:
    path = tmp_path / "model.gguf"
    write_model(path, alignment)
    index, reader = read_index(path), GGUFReader(path)
    assert index.fields["general.type"] == "adapter"
    assert index.fields["gemma3.block_count"] == 18
    assert index.fields["tokenizer.ggml.add_bos_token"] is True
    assert index.arrays == {"tokenizer.ggml.tokens": 250, "tokenizer.ggml.scores": 250}
    assert list(index.tensors) == [t.name for t in reader.tensors]
    for tensor in reader.tensors:
        entry = index.tensors[tensor.name]
        assert entry.type == tensor.tensor_type
        assert entry.shape == tuple(int(n) for n in tensor.shape)
        assert (entry.offset, entry.nbytes) == (tensor.data_offset, tensor.n_bytes)
        assert np.array_equal(
            index.data(tensor.name), np.asarray(tensor.data).view(np.uint8).ravel()
        )
    assert index.tensors["token_embd.weight"].shape == (64, 8)  # a row of 64 first


def test_a_file_it_cannot_read_is_refused_saying_why(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("these are notes, not a model" * 4)
    with pytest.raises(GGUFFormatError, match="does not start with 'GGUF'"):
        read_index(text)
    path = tmp_path / "model.gguf"
    write_model(path, None)
    whole = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:200])  # inside the vocabulary
    with pytest.raises(GGUFFormatError, match="ends inside its header"):
        read_index(cut)
    cut.write_bytes(whole[:-100])  # the last tensor's bytes missing
    with pytest.raises(GGUFFormatError, match="runs past the end"):
        read_index(cut)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(GGUFFormatError, match="too short"):
        read_index(empty)
