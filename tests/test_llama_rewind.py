"""A banned phrase's backtrack on llama.cpp rewinds the cache instead of evaluating the
prompt's tail and every token since again: one token evaluated, the same logits."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from musegpt.engines.base import Engine
from musegpt.engines.llama import LlamaCppEngine
from musegpt.generation.params import SamplingParams


@pytest.fixture
def llama_engine(gemma: Engine) -> LlamaCppEngine:
    if not isinstance(gemma, LlamaCppEngine):
        pytest.skip("the default model is not on llama.cpp here")
    return gemma


def count_evaluated(engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of tokens of each llama.cpp evaluation from now on."""
    sizes: list[int] = []
    evaluate = engine.llama.eval

    def counted(tokens: Sequence[int]) -> None:
        sizes.append(len(tokens))
        evaluate(tokens)

    monkeypatch.setattr(engine.llama, "eval", counted)
    return sizes


def test_a_take_back_rewinds_to_the_same_logits_with_one_token(
    llama_engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = llama_engine.tokenize("The lighthouse keeper climbed the stairs and")
    source = llama_engine.logits_source()
    logits = source.prefill([prompt]).clone()
    generated: list[int] = []
    after: list[torch.Tensor] = []  # the logits after each generated token
    for _ in range(6):
        generated.append(int(logits.argmax()))
        logits = source.step(torch.tensor([generated[-1]])).clone()
        after.append(logits)
    sizes = count_evaluated(llama_engine, monkeypatch)
    # Taken back to the third generated token, then to the first: each a rewind.
    for keep in (3, 1):
        again = source.prefill([[*prompt, *generated[:keep]]])
        assert torch.equal(again, after[keep - 1])
    assert sizes == [1, 1]
    # A window that is not this decode's own tokens is evaluated in chunks as before.
    other = source.prefill([[*prompt, generated[0] + 1]])
    assert sizes[2:] and sum(sizes[2:]) > 1
    assert other.shape == again.shape


def test_a_banned_phrase_costs_one_token_per_take_back(
    llama_engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = SamplingParams(temperature=0.0, max_new_tokens=24, seed=1)
    prompt = "Once upon a time, there was a little"
    first = llama_engine.complete(prompt, params)[0]
    word = first.text.split()[3]  # a word well inside the greedy continuation
    sizes = count_evaluated(llama_engine, monkeypatch)
    banned = llama_engine.complete(prompt, params, banned_regex=[rf"\b{word}\b"])[0]
    assert word not in banned.text.split()
    # The prompt is the first run's, still in the cache: not evaluated again; each step
    # and each take-back's rewind evaluates one token.
    assert sizes and all(size == 1 for size in sizes), sizes
