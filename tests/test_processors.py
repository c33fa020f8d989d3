"""Logits processors: each matches its Hugging Face twin on identical logits, and the
parameters are validated with messages that name the field."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from transformers.generation import logits_process as hf

from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import (
    DecodeState,
    LogitBias,
    MinNewTokens,
    MinP,
    NoRepeatNGram,
    PresenceFrequencyPenalty,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    TypicalP,
    build_pipeline,
)

VOCAB = 50


def random_case(seed: int, batch: int = 3, length: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 12, (batch, length), generator=g)  # small range: many repeats
    scores = torch.randn(batch, VOCAB, generator=g) * 3
    return ids, scores


PAIRS: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
    ("temperature", lambda: Temperature(0.7), lambda: hf.TemperatureLogitsWarper(0.7)),
    ("top_k", lambda: TopK(7), lambda: hf.TopKLogitsWarper(7)),
    ("top_p", lambda: TopP(0.8), lambda: hf.TopPLogitsWarper(0.8)),
    ("min_p", lambda: MinP(0.1), lambda: hf.MinPLogitsWarper(0.1)),
    ("typical_p", lambda: TypicalP(0.6), lambda: hf.TypicalLogitsWarper(0.6)),
    (
        "repetition",
        lambda: RepetitionPenalty(1.3),
        lambda: hf.RepetitionPenaltyLogitsProcessor(1.3),
    ),
    ("no_repeat_3gram", lambda: NoRepeatNGram(3), lambda: hf.NoRepeatNGramLogitsProcessor(3)),
    ("no_repeat_1gram", lambda: NoRepeatNGram(1), lambda: hf.NoRepeatNGramLogitsProcessor(1)),
]


@pytest.mark.parametrize(("name", "ours", "theirs"), PAIRS, ids=[p[0] for p in PAIRS])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_same_scores_as_hugging_face(
    name: str, ours: Callable[[], object], theirs: Callable[[], object], seed: int
) -> None:
    ids, scores = random_case(seed)
    expected = theirs()(ids, scores.clone())  # type: ignore[operator]
    got = ours()(DecodeState.from_ids(ids), scores.clone())  # type: ignore[operator]
    assert torch.equal(torch.isinf(got), torch.isinf(expected)), name
    finite = torch.isfinite(expected)
    torch.testing.assert_close(got[finite], expected[finite], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("eos", [9, [9, 4]])
def test_min_new_tokens_matches_hugging_face(eos: int | list[int]) -> None:
    ids, scores = random_case(1, length=5)
    expected = hf.MinNewTokensLengthLogitsProcessor(
        prompt_length_to_skip=2, min_new_tokens=4, eos_token_id=eos
    )(ids, scores.clone())
    got = MinNewTokens(4, eos)(DecodeState.from_ids(ids, prompt_length=2), scores.clone())
    assert torch.equal(got, expected)
    assert got[0, 9] == float("-inf")


def test_presence_and_frequency_penalise_generated_tokens_only() -> None:
    state = DecodeState([[1, 2, 3, 3, 3, 4]], prompt_lengths=[2])  # generated: 3 3 3 4
    scores = torch.zeros(1, 6)
    out = PresenceFrequencyPenalty(presence=0.5, frequency=0.25)(state, scores)
    assert out[0].tolist() == [0.0, 0.0, 0.0, -0.5 - 0.75, -0.5 - 0.25, 0.0]


def test_logit_bias_shifts_named_tokens_and_rejects_unknown_ids() -> None:
    out = LogitBias({3: 5.0, 0: -100.0}, VOCAB)(DecodeState([[1]], [1]), torch.zeros(1, VOCAB))
    assert out[0, 3] == 5.0 and out[0, 0] == -100.0 and out[0, 1] == 0.0
    with pytest.raises(ValueError, match="outside the vocabulary"):
        LogitBias({VOCAB: 1.0}, VOCAB)


def test_out_of_vocabulary_bias_names_a_few_ids_and_the_range() -> None:
    huge = {token: 1.0 for token in range(VOCAB - 2, 60_000)}
    with pytest.raises(ValueError) as info:
        LogitBias(huge, VOCAB)
    message = str(info.value)
    assert "50, 51, 52 and 59947 more" in message and f"[0, {VOCAB})" in message
    assert len(message) < 200


def test_banned_ids_and_taken_back_tokens_are_never_left() -> None:
    state = DecodeState([[1, 2], [3]], [1, 1], blocked=[{4}, set()])
    scores = torch.zeros(2, 6)
    for step in build_pipeline(SamplingParams(top_k=1), 6, None, banned_ids={0, 5}):
        scores = step(state, scores)
    allowed = [set(torch.nonzero(row > float("-inf")).view(-1).tolist()) for row in scores]
    # top-k runs after the bans: it keeps the best of what is left, never nothing.
    assert allowed == [{1, 2, 3}, {1, 2, 3, 4}]


def test_pipeline_follows_the_documented_order() -> None:
    params = SamplingParams(
        temperature=0.7, top_k=5, top_p=0.9, typical_p=0.9, min_p=0.05,
        repetition_penalty=1.2, presence_penalty=0.1, no_repeat_ngram_size=2,
        min_new_tokens=3, logit_bias={1: 1.0},
    )  # fmt: skip
    steps = build_pipeline(params, VOCAB, eos_id=0, banned_ids={7})
    names = [type(p).__name__ for p in steps]
    assert names == [
        "LogitBias", "RepetitionPenalty", "PresenceFrequencyPenalty", "NoRepeatNGram",
        "MinNewTokens", "BanTokens", "BlockTakenBack", "Temperature", "TopK", "TopP",
        "TypicalP", "MinP",
    ]  # fmt: skip
    greedy = build_pipeline(SamplingParams(temperature=0, top_k=5), VOCAB, eos_id=0)
    assert [type(p).__name__ for p in greedy] == ["BlockTakenBack"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -0.1, "greater than or equal to 0"),
        ("top_p", 0.0, "greater than 0"),
        ("top_p", 1.5, "less than or equal to 1"),
        ("min_p", 1.0, "less than 1"),
        ("max_new_tokens", 0, "greater than or equal to 1"),
        ("presence_penalty", 3.0, "less than or equal to 2"),
        ("logprobs", 21, "less than or equal to 20"),
        ("banned_regex", ["(unclosed"], "not a valid regular expression"),
        ("logit_bias", {5: 101.0}, r"\[-100, 100\]"),
        ("stop", [""], "empty strings"),
        ("seed", 2**64, "less than or equal to 18446744073709551615"),
        ("seed", -1, "greater than or equal to 0"),
    ],
)
def test_out_of_range_values_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        SamplingParams(**{field: value})
    assert field in str(info.value)


def test_min_new_tokens_cannot_exceed_max() -> None:
    with pytest.raises(ValidationError, match="min_new_tokens"):
        SamplingParams(min_new_tokens=10, max_new_tokens=5)
