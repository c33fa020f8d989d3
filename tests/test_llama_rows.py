"""llama.cpp decodes a request's samples as one batch: the rows are sequences of one context
sharing the prompt's cache, each step one `llama_decode` of one token per row, and a row
that takes back tokens is rewound alone (a story chapter's two opening drafts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as bindings
import pytest
import torch

from musegpt.engines.base import Engine
from musegpt.engines.llama import LlamaCppEngine, cpu_backend_has_amx, loading_defaults
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import BanInText
from musegpt.studio import Studio


@pytest.fixture
def llama_engine(gemma: Engine) -> LlamaCppEngine:
    if not isinstance(gemma, LlamaCppEngine):
        pytest.skip("the default model is not on llama.cpp here")
    return gemma


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[int]]]:
    """The sequence ids of every token of each llama.cpp decode from now on (both the
    engine's own batches and `Llama.eval`'s)."""
    seen: list[list[int]] = []
    decode = bindings.llama_decode

    def counted(ctx: Any, batch: Any) -> int:
        seen.append([int(batch.seq_id[i][0]) for i in range(batch.n_tokens)])
        return int(decode(ctx, batch))

    monkeypatch.setattr(llama_cpp, "llama_decode", counted)
    monkeypatch.setattr(bindings, "llama_decode", counted)
    yield seen


def test_two_rows_share_the_prompt_and_do_not_mix(
    llama_engine: LlamaCppEngine, batches: list[list[int]]
) -> None:
    lighthouse = llama_engine.tokenize("The lighthouse keeper climbed the stairs and")
    kitchen = llama_engine.tokenize("In the kitchen, grandmother rolled the dough and")
    alone = llama_engine.logits_source().prefill([kitchen]).clone()
    source = llama_engine.logits_source()
    both = source.prefill([lighthouse, lighthouse]).clone()
    assert torch.equal(both[0], both[1])  # the second row is a copy of the first's cache
    assert [len(b) for b in batches[1:]] == [len(lighthouse)]  # …evaluated once
    # Different prompts: each row's logits are those of its prompt alone: bit for bit where
    # llama.cpp repacks the weights (its kernels then do not depend on the batch's size),
    # near where they stay in plain buffers (a CPU with AMX): the same likeliest tokens.
    source = llama_engine.logits_source()
    rows = source.prefill([lighthouse, kitchen]).clone()
    if cpu_backend_has_amx():
        assert torch.equal(rows[1].topk(5).indices, alone[0].topk(5).indices)
    else:
        assert torch.equal(rows[1], alone[0])
    # A step of both rows is one decode, a token each; each row goes on from its own text
    # (a batch's numbers are not one row's bit for bit, but near: the same likeliest tokens).
    del batches[:]
    chosen = [int(rows[0].argmax()), int(rows[1].argmax())]
    stepped = source.step(torch.tensor(chosen)).clone()
    assert batches == [[0, 1]]
    single = llama_engine.logits_source()
    single.prefill([kitchen])
    on_its_own = single.step(torch.tensor([chosen[1]]))
    assert torch.equal(stepped[1].topk(5).indices, on_its_own[0].topk(5).indices)
    assert not torch.equal(stepped[0].topk(5).indices, stepped[1].topk(5).indices)


def test_a_request_of_two_samples_is_one_batch_and_the_same_for_a_seed(
    llama_engine: LlamaCppEngine, batches: list[list[int]]
) -> None:
    params = SamplingParams(temperature=0.8, max_new_tokens=12, min_new_tokens=12, seed=4)
    prompt = "从前有一个机器人，它住在一座很高的塔里。有一天，它发现"
    first = [c.text for c in llama_engine.complete(prompt, params, n=2)]
    steps = [b for b in batches if len(b) == 2]
    assert len(steps) == 11 and all(b == [0, 1] for b in steps), batches  # 12 tokens a row
    assert [c.text for c in llama_engine.complete(prompt, params, n=2)] == first
    assert first[0] != first[1]


def test_a_take_back_in_one_row_rewinds_that_row_alone(
    llama_engine: LlamaCppEngine, batches: list[list[int]]
) -> None:
    prompt = "Once upon a time, there was a little"
    # Sampled rows differ (greedy ones are the same row twice, and would take back together);
    # the banned word is one the second row writes past its first words and the first never
    # does, so only the second row meets it.
    for seed in range(1, 9):
        params = SamplingParams(temperature=0.9, max_new_tokens=24, seed=seed)
        plain = llama_engine.complete(prompt, params, n=2)
        first = set(plain[0].text.split())
        own = [w for w in plain[1].text.split()[2:] if w.isalpha() and w not in first]
        if own:
            word = own[0]
            break
    else:
        pytest.fail("no seed gave the second row a word of its own")
    del batches[:]
    banned = llama_engine.complete(prompt, params, n=2, banned_regex=[rf"\b{word}\b"])
    assert all(word not in c.text.split() for c in banned)
    # The prompt is the plain run's, already in the cache: not evaluated again. Every
    # decode is a step of the rows (a token each) or one row's one-token rewind.
    after = batches
    odd = [b for b in after if len(b) != 2]
    assert all(len(b) == 1 for b in odd), odd
    assert any(len(b) == 1 for b in after)  # a take-back happened


class NoThe(BanInText):
    def banned_at(self, text: str, shown: int) -> int | None:
        at = text.lower().find(" the ", shown)
        return None if at < 0 else at


def test_a_writers_drafts_are_one_batch_under_its_rules(
    llama_engine: LlamaCppEngine, batches: list[list[int]]
) -> None:
    writer = Studio(llama_engine).writer("a robot", seed=1)
    drafts = writer.write_many("The robot walked to the end of the pier and", 24, 2)
    assert any(b == [0, 1] for b in batches)  # the two drafts stepped together
    assert any(" the " in f" {d.lower()} " for d in drafts)
    kept = writer.write_many(
        "The robot walked to the end of the pier and", 24, 2, constraints=[NoThe()]
    )
    assert len(kept) == 2 and all(" the " not in f" {d.lower()} " for d in kept), kept


def test_two_rows_past_the_context_slide_within_their_share_of_it(
    llama_engine: LlamaCppEngine,
) -> None:
    small = LlamaCppEngine.load(llama_engine.path, context_length=256, threads=1)
    prompt = "The lighthouse keeper kept a diary of the storms. " * 12  # ~130 tokens
    params = SamplingParams(temperature=0.8, max_new_tokens=300, min_new_tokens=300, seed=2)
    rows = small.complete(prompt, params, n=2)
    # The two rows' cells outgrow the 256 the context has: each slides within its half.
    assert [len(r.token_ids) for r in rows] == [300, 300]
    assert rows[0].text != rows[1].text


def test_a_row_taken_back_to_its_prompt_leaves_the_other_rows_cache(
    llama_engine: LlamaCppEngine, batches: list[list[int]]
) -> None:
    lighthouse = llama_engine.tokenize("The lighthouse keeper climbed the stairs and")
    kitchen = llama_engine.tokenize("In the kitchen, grandmother rolled the dough and")
    source = llama_engine.logits_source()
    first = source.prefill([lighthouse, kitchen]).clone()
    chosen = [int(first[0].argmax()), int(first[1].argmax())]
    source.step(torch.tensor(chosen))
    # Row 0 takes back all it wrote; row 1 goes on. Row 0's prompt is not evaluated
    # again (its logits are those of the first prefill, bit for bit), and row 1 keeps
    # its cache: re-evaluating row 0's prompt with `Llama.eval` once dropped every
    # sequence's cells past the chunk it began at, and row 1 went on from nothing.
    del batches[:]
    rebuilt = source.prefill([lighthouse, [*kitchen, chosen[1]]]).clone()
    assert batches == []
    assert torch.equal(rebuilt[0], first[0])
    following = int(rebuilt[1].argmax())
    stepped = source.step(torch.tensor([chosen[0], following])).clone()
    single = llama_engine.logits_source()
    single.prefill([[*kitchen, chosen[1]]])
    on_its_own = single.step(torch.tensor([following]))
    # A batch's numbers are near one row's (the likeliest tokens alike), not bit for bit.
    assert torch.equal(stepped[1].topk(3).indices, on_its_own[0].topk(3).indices)


def test_the_same_prompt_again_is_not_evaluated_again(
    llama_engine: LlamaCppEngine, batches: list[list[int]]
) -> None:
    prompt = llama_engine.tokenize("The lighthouse keeper kept a diary of the storms. " * 14)
    assert len(prompt) > 128  # more than one chunk: its last is what a redraw paid again
    source = llama_engine.logits_source()
    first = source.prefill([prompt]).clone()
    source.step(torch.tensor([int(first[0].argmax())]))
    del batches[:]
    again = llama_engine.logits_source().prefill([prompt]).clone()  # a redraw, new seed
    assert batches == [] and torch.equal(again, first)
    # …and it goes on as a fresh evaluation of the prompt would: the cells past it are gone.
    stepped = llama_engine.logits_source()
    stepped.prefill([prompt])
    after = stepped.step(torch.tensor([int(first[0].argmax())])).clone()
    longer = llama_engine.tokenize("In the kitchen, grandmother rolled the dough and")
    llama_engine.logits_source().prefill([longer])  # the cache now holds another prompt
    fresh = llama_engine.logits_source()
    fresh.prefill([prompt])
    assert torch.equal(fresh.step(torch.tensor([int(first[0].argmax())])), after)


def test_loading_defaults_set_rows_and_keep_weights_out_of_amx_buffers() -> None:
    """A `Llama` loaded inside `loading_defaults` gets the context's rows and, where the CPU
    backend has AMX (whose buffers crash Q4_K models on some CPUs), no extra buffer types;
    the library's own defaults come back afterwards."""
    before = bindings.llama_model_default_params().use_extra_bufts
    with loading_defaults(3):
        assert bindings.llama_context_default_params().n_seq_max == 3
        assert bindings.llama_context_default_params().kv_unified
        extra = bindings.llama_model_default_params().use_extra_bufts
        assert extra == (before and not cpu_backend_has_amx())
    with loading_defaults():
        assert bindings.llama_context_default_params().n_seq_max == 1
    assert bindings.llama_model_default_params().use_extra_bufts == before
    assert bindings.llama_context_default_params().n_seq_max == 1
