"""The form constraints' tables on disk: built once per vocabulary (and once for the CMU
dictionary), read back equal to a fresh build, rebuilt when the tokenizer changed or the
file is damaged — never a crash."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from musegpt.engines.base import BackendTokenizer
from musegpt.forms import english, get_form, table_cache
from musegpt.forms.constraints import (
    _CHAR_TABLES,
    GAP_LETTERS,
    LETTERS,
    ChineseTable,
    EnglishTable,
    FormConstraint,
    _char_tables,
)
from musegpt.generation.processors import DecodeState
from musegpt.tokenizer.bpe import BPETokenizer

TEXT = (
    "The autumn rain falls soft upon the hill,\n"
    "and every leaf is singing, cold and still.\n"
    "A lantern burns beside the quiet sea;\n"
    "the night is long, and you are here with me.\n"
) * 4


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MUSEGPT_CACHE", str(tmp_path))
    return tmp_path / "forms"


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return BPETokenizer.train([TEXT], 330)


class FileTokenizer(BackendTokenizer):
    """A backend's tokenizer (its pieces are the BPE's), known by its model file, as
    llama.cpp's and transformers' are."""

    kind = "file-backed"

    def __init__(self, inner: BPETokenizer, model_file: Path) -> None:
        super().__init__(inner.vocab_size, inner.eot_id, str(model_file))
        self.inner = inner

    def encode(self, text: str) -> list[int]:
        return self.inner.encode(text)

    def token_bytes(self, token_id: int) -> bytes:
        return self.inner.token_bytes(token_id)


def assert_same_table(a: EnglishTable, b: EnglishTable) -> None:
    for name in ("kind", "gap_id", "newlines", "is_gap", "one_newline", "newline_only"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.gaps == b.gaps
    assert a.letters == b.letters
    assert a.max_letters == b.max_letters


def test_cached_table_equals_a_fresh_build(cache: Path, tokenizer: BPETokenizer) -> None:
    first = EnglishTable.cached(tokenizer)  # built and written
    (written,) = cache.glob("english-tokens-*.npz")
    stamp = written.stat().st_mtime_ns
    again = EnglishTable.cached(tokenizer)  # read back
    assert written.stat().st_mtime_ns == stamp, "read, not rebuilt"
    fresh = EnglishTable.build(tokenizer)
    assert_same_table(first, fresh)
    assert_same_table(again, fresh)
    lexicon = english.cmu_lexicon()
    for kind in (LETTERS, GAP_LETTERS):
        ids, masks = again.nodes(lexicon, "", kind)
        fresh_ids, fresh_masks = fresh.nodes(lexicon, "", kind)
        assert dict(zip(ids.tolist(), masks.tolist(), strict=True)) == dict(
            zip(fresh_ids.tolist(), fresh_masks.tolist(), strict=True)
        )
    assert list(cache.glob("english-word-starts-*.npz")), "word starts kept on disk too"


def test_a_changed_model_file_gets_its_own_table(
    cache: Path, tokenizer: BPETokenizer, tmp_path: Path
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF one")
    before = table_cache.tokenizer_identity(FileTokenizer(tokenizer, model))
    EnglishTable.cached(FileTokenizer(tokenizer, model))
    model.write_bytes(b"GGUF two, a longer file")  # a new model at the same path
    os.utime(model, ns=(1, 1))
    after = table_cache.tokenizer_identity(FileTokenizer(tokenizer, model))
    assert after != before
    EnglishTable.cached(FileTokenizer(tokenizer, model))
    assert len(list(cache.glob("english-tokens-*.npz"))) == 2


def test_a_stale_table_is_rebuilt(cache: Path, tokenizer: BPETokenizer) -> None:
    """A file holding another tokenizer's table, under this one's name, is not trusted."""
    other = BPETokenizer.train(["a completely different text about clocks and rivers"], 280)
    EnglishTable.cached(other)
    (other_file,) = cache.glob("english-tokens-*.npz")
    own_file = table_cache.table_path("english-tokens", table_cache.tokenizer_identity(tokenizer))
    other_file.rename(own_file)
    assert_same_table(EnglishTable.cached(tokenizer), EnglishTable.build(tokenizer))
    assert_same_table(EnglishTable.cached(tokenizer), EnglishTable.build(tokenizer))


@pytest.mark.parametrize(
    "damage", [b"", b"not a zip file at all", b"PK\x03\x04 truncated zip header"]
)
def test_a_corrupted_table_is_rebuilt(cache: Path, tokenizer: BPETokenizer, damage: bytes) -> None:
    EnglishTable.cached(tokenizer)
    (written,) = cache.glob("english-tokens-*.npz")
    written.write_bytes(damage)
    assert_same_table(EnglishTable.cached(tokenizer), EnglishTable.build(tokenizer))
    with np.load(written, allow_pickle=False) as data:  # rewritten whole
        assert "kind" in data.files


def test_cache_that_cannot_be_written_still_gives_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokenizer: BPETokenizer
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("MUSEGPT_CACHE", str(blocked))
    assert_same_table(EnglishTable.cached(tokenizer), EnglishTable.build(tokenizer))


def test_dictionary_tables_read_back_equal(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pronouncing

    english._cmu.cache_clear()
    english.cmu_lexicon.cache_clear()
    try:
        built = english.cmu_lexicon()  # parsed from the package, then written
        built_rhymes = english.RhymeIndex(built).by_key
        english._cmu.cache_clear()
        english.cmu_lexicon.cache_clear()
        read = english.cmu_lexicon()  # from the cache files
        assert read.words == built.words and read.counts == built.counts
        assert english.RhymeIndex(read).by_key == built_rhymes
        pronouncing.init_cmu()
        assert english._cmu() == dict(pronouncing.lookup)
        assert {p.name.split("-")[0] for p in cache.glob("*.npz")} == {"cmudict", "cmu"}
    finally:
        english._cmu.cache_clear()
        english.cmu_lexicon.cache_clear()


def test_prefix_masks_match_walking_the_words() -> None:
    lexicon = english.lexicon_from_words(TEXT.replace(",", " ").replace(".", " ").split())
    walked = lexicon.nodes("", 20)
    prefixes = [*walked, "zz", "q", "autumnal", "", "th", "the"]
    masks = lexicon.prefix_masks(prefixes)
    assert [int(m) for m in masks] == [
        walked.get(p, 0) if p else int(np.bitwise_or.reduce([1 << c for c in lexicon.counts]))
        for p in prefixes
    ]
    assert int(english.Lexicon([]).prefix_masks(["a"])[0]) == 0


def test_constraint_with_cached_tables_allows_what_a_fresh_one_does(
    cache: Path, tokenizer: BPETokenizer
) -> None:
    form = get_form("haiku")
    fresh_table = EnglishTable.build(tokenizer)
    constraint = FormConstraint(form, tokenizer)
    assert_same_table(constraint.en, fresh_table)
    text = "the autumn rain\nand every leaf is singing cold\n"
    ids = tokenizer.encode(text)
    scores = torch.zeros(1, tokenizer.vocab_size)
    out = constraint(DecodeState([ids], [0]), scores)
    allowed = {tokenizer.decode([t]) for t in torch.nonzero(out[0] > float("-inf")).flatten()}
    assert allowed and all("\n" not in a for a in allowed), "line 3 starts with a word"


CHINESE = "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n春眠不觉晓，处处闻啼鸟。\n" * 4


def test_chinese_tables_read_back_equal(cache: Path) -> None:
    tokenizer = BPETokenizer.train([CHINESE], 300)  # byte-level: characters split
    fresh = ChineseTable.build(tokenizer)
    ChineseTable.cached(tokenizer)
    read = ChineseTable.cached(tokenizer)
    assert list(cache.glob("chinese-tokens-*.npz"))
    for name in ("ids", "kind", "hans", "partial", "punct", "chars", "last", "span_lo"):
        assert torch.equal(getattr(read.all, name), getattr(fresh.all, name)), name
    assert read.continuing == fresh.continuing
    pending = next(
        tokenizer.token_bytes(t)
        for t in range(tokenizer.vocab_size)
        if tokenizer.token_bytes(t)[:1] == "月".encode()[:1] and len(tokenizer.token_bytes(t)) < 3
    )
    assert torch.equal(read.completing(pending).ids, fresh.completing(pending).ids)
    saved = dict(_CHAR_TABLES)
    _CHAR_TABLES.clear()
    try:
        built = _char_tables("pingshui")
        _CHAR_TABLES.clear()
        again = _char_tables("pingshui")
        assert torch.equal(built[0], again[0]) and torch.equal(built[1], again[1])
        assert built[2] == again[2]
    finally:
        _CHAR_TABLES.clear()
        _CHAR_TABLES.update(saved)
