"""Tokenizers are lossless for every Unicode string and survive a JSON round trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musegpt.tokenizer import EOT, BPETokenizer, CharTokenizer, Tokenizer, tokenizer_from_json

TRAINING_TEXTS = [
    "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n",
    "  Rough winds do shake the darling buds of May,\r\n\tAnd summer's lease hath all too short",
    "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。",
    "🎉🎶 café naïve e\u0301 — “quotes” <|endoftext|> after the separator",
] * 20

# Text that mixes the scripts a poetry corpus meets, and the separator itself.
MIXED = st.lists(
    st.sampled_from(
        [
            "床前",
            "明月光",
            "🎉",
            "👩‍👩‍👧",
            " the",
            "  ",
            "\r\n",
            "\n\n",
            "\t",
            "e\u0301",
            "\x00",
            "\x1b",
            EOT,
            "<|end",
            "ﬁ",
            "한국어",
            "Ω",
            "x",
        ]
    )
).map("".join)

TEXTS = st.one_of(st.text(), MIXED, st.text(alphabet=st.characters(codec="utf-8")))


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(TRAINING_TEXTS, vocab_size=400)


@pytest.fixture(scope="module")
def char() -> CharTokenizer:
    return CharTokenizer.train(TRAINING_TEXTS)


@pytest.fixture(scope="module", params=["bpe", "char"])
def tokenizer(request: pytest.FixtureRequest, bpe: BPETokenizer, char: CharTokenizer) -> Tokenizer:
    return bpe if request.param == "bpe" else char


@settings(max_examples=300, deadline=None)
@given(text=TEXTS)
def test_round_trip(tokenizer: Tokenizer, text: str) -> None:
    assert tokenizer.decode(tokenizer.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(text=TEXTS)
def test_token_bytes_concatenate_to_utf8(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text)
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert b"".join(tokenizer.token_bytes(i) for i in ids) == text.encode("utf-8")


@settings(max_examples=100, deadline=None)
@given(text=TEXTS)
def test_json_round_trip_encodes_identically(tokenizer: Tokenizer, text: str) -> None:
    again = tokenizer_from_json(tokenizer.to_json())
    assert type(again) is type(tokenizer)
    assert again.vocab_size == tokenizer.vocab_size
    assert again.eot_id == tokenizer.eot_id
    assert again.encode(text) == tokenizer.encode(text)
    assert again.decode(tokenizer.encode(text)) == text


def test_separator_string_is_one_token(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(f"a{EOT}b{EOT}")
    assert ids.count(tokenizer.eot_id) == 2
    assert tokenizer.encode(EOT) == [tokenizer.eot_id]
    assert tokenizer.token_bytes(tokenizer.eot_id) == EOT.encode()


def test_bpe_learns_merges_up_to_vocab_size(bpe: BPETokenizer) -> None:
    assert 257 < bpe.vocab_size <= 400
    # frequent words become few tokens: merges really happened
    assert len(bpe.encode("summer")) < len("summer")
    # no prefix space is added: a leading space is kept as it is
    assert bpe.decode(bpe.encode(" summer")) == " summer"


def test_bpe_batch_encoding_matches_single(bpe: BPETokenizer) -> None:
    texts = ["明月光", " summer's day", "", EOT]
    assert bpe.encode_batch(texts) == [bpe.encode(t) for t in texts]


def test_bpe_json_stores_tokenizers_json(bpe: BPETokenizer) -> None:
    data = json.loads(bpe.to_json())
    assert data["kind"] == "bpe"
    hf = json.loads(data["tokenizers_json"])
    assert hf["normalizer"] is None
    assert hf["pre_tokenizer"]["add_prefix_space"] is False


def test_bpe_vocab_size_too_small() -> None:
    with pytest.raises(ValueError, match="at least 257"):
        BPETokenizer.train(["x"], vocab_size=100)


def test_char_vocabulary_is_sorted_seen_characters(char: CharTokenizer) -> None:
    seen = sorted(set("".join(TRAINING_TEXTS).replace(EOT, "")))
    assert char.chars == seen
    assert char.eot_id == len(seen)
    assert char.vocab_size == len(seen) + 1 + 256
    assert CharTokenizer.train(reversed(TRAINING_TEXTS)).to_dict() == char.to_dict()


def test_char_unseen_character_falls_back_to_bytes(char: CharTokenizer) -> None:
    ids = char.encode("a寂b")
    assert len(ids) == 2 + len("寂".encode())
    assert char.decode(ids) == "a寂b"


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        tokenizer_from_json('{"kind": "wordpiece"}')


def test_out_of_range_id_is_rejected(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.decode([tokenizer.vocab_size])
