"""MuseGPT's decoder on llama.cpp's logits at llama.cpp's speed: top-k first where that is
exact, llama.cpp's thread count from the machine's load (without changing the text), and
the decoder's own torch work on one thread."""

from __future__ import annotations

import math

import pytest
import torch

from musegpt.engines.default_model import default_model_path
from musegpt.engines.llama import LlamaCppEngine, ThreadBudget
from musegpt.generation.candidates import ON_CANDIDATES, on_candidates
from musegpt.generation.decoder import argmax_rows, best_k, shortlist_scores
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import (
    DecodeState,
    WatchText,
    apply_pipeline,
    build_pipeline,
)
from musegpt.tokenizer.char import CharTokenizer

VOCAB = 20000  # wide enough for best_k's sampled threshold (k * 64 scores or more)


def _full_and_shortlisted(
    params: SamplingParams, raw: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities over the vocabulary: the whole pipeline, and the shortlisted one."""
    pipeline = build_pipeline(params, raw.shape[-1], eos_id=0)
    state = DecodeState([[1, 2, 3]] * raw.shape[0], [1] * raw.shape[0])
    full = torch.softmax(apply_pipeline(pipeline, state, raw), dim=-1)
    scores, ids = shortlist_scores(pipeline, state, raw)
    if ids is None:  # the whole vocabulary was needed (a tie)
        return full, torch.softmax(scores, dim=-1)
    short = torch.zeros_like(full).scatter(-1, ids, torch.softmax(scores, dim=-1))
    return full, short


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0.8, top_k=40),
        SamplingParams(temperature=0.8, top_k=64, top_p=0.9, presence_penalty=0.5),
        SamplingParams(temperature=1.3, top_k=50, min_p=0.05, typical_p=0.9),
        SamplingParams(temperature=0.7, top_k=300, top_p=0.95, frequency_penalty=0.3),
    ],
)
def test_shortlist_gives_the_same_distribution_as_the_whole_vocabulary(
    params: SamplingParams,
) -> None:
    torch.manual_seed(0)
    full, short = _full_and_shortlisted(params, 3 * torch.randn(3, VOCAB))
    torch.testing.assert_close(short, full, rtol=1e-5, atol=1e-7)


def test_shortlist_with_fewer_allowed_tokens_than_k() -> None:
    """A constraint that leaves 10 tokens: top-k keeps them all, and so does the shortlist."""
    raw = torch.full((1, VOCAB), float("-inf"))
    allowed = torch.randperm(VOCAB)[:10]
    raw[0, allowed] = torch.randn(10)
    full, short = _full_and_shortlisted(SamplingParams(temperature=0.9, top_k=40), raw)
    torch.testing.assert_close(short, full)
    assert set(torch.nonzero(short[0]).flatten().tolist()) == set(allowed.tolist())


def test_best_k_finds_the_best_and_declines_ties() -> None:
    torch.manual_seed(1)
    scores = torch.randn(2, VOCAB)
    values, ids = best_k(scores, 50)  # type: ignore[misc]
    expected = torch.topk(scores, 50).indices.sort(dim=-1).values
    assert torch.equal(ids, expected)
    assert torch.equal(values, scores.gather(-1, expected))
    assert bool((ids[:, 1:] > ids[:, :-1]).all()), "listed by token id"
    # A score outside the best k equal to the k-th: top-k keeps k + 1, so no shortlist.
    tied = torch.randn(1, VOCAB)
    kth = torch.topk(tied, 50).values[0, -1]
    outside = int(torch.nonzero(tied[0] < kth)[0])
    tied[0, outside] = kth
    assert best_k(tied, 50) is None
    # Top-k keeps the tie too (51 tokens), whichever way the shortlist goes.
    full, short = _full_and_shortlisted(SamplingParams(top_k=50), tied)
    torch.testing.assert_close(short, full)
    assert int((short > 0).sum()) == 51


@pytest.mark.parametrize("bias", [{}, {5: -1.0}])  # a logit bias: not on candidates
def test_temperature_that_ties_the_kth_with_the_next_keeps_both(bias: dict[int, float]) -> None:
    """Two scores apart before the temperature and equal after it: top-k on the tempered
    scores keeps both (k + 1 tokens), and so must the shortlist."""
    temperature = 3.0
    a = torch.tensor(1.0)
    while True:  # the next float below a, divided by 3, rounds to the same as a / 3
        b = torch.nextafter(a, torch.tensor(0.0))
        if b / temperature == a / temperature:
            break
        a = b
    k = 40
    raw = torch.full((1, VOCAB), -5.0) + 0.001 * torch.randn(1, VOCAB)
    raw[0, :39] = 2.0 + torch.rand(39)
    raw[0, 100], raw[0, 200] = a, b
    params = SamplingParams(temperature=temperature, top_k=k, logit_bias=bias)
    full, short = _full_and_shortlisted(params, raw)
    torch.testing.assert_close(short, full)
    assert int((short > 0).sum()) == k + 1


def test_processors_on_candidates_match_the_whole_vocabulary() -> None:
    """Each processor the shortlist applies to candidates alone gives, on them, exactly
    what it gives over the whole vocabulary (this guards against the two drifting)."""
    tokenizer = CharTokenizer.train(["the cat sat on the mat.\nthe cat sat: on the mat\n"])
    vocab = tokenizer.vocab_size
    params = SamplingParams(
        temperature=0.9, top_k=8, presence_penalty=0.3, frequency_penalty=0.5,
        repetition_penalty=1.2, repeat_last_n=6, dry_multiplier=0.8, min_new_tokens=30,
    )  # fmt: skip
    ids = tokenizer.encode("the cat sat on the mat the cat sat on the")
    state = DecodeState([ids, ids[:-3]], [4, 30], blocked=[{ids[-1]}, set()])
    seen: list[str] = []  # WatchText changes no score: it reads the text on candidates too
    watch = WatchText(tokenizer, seen.append, every=1)
    pipeline = build_pipeline(params, vocab, {0}, [watch], banned_ids={1, 2}, tokenizer=tokenizer)
    steps = [step for step in pipeline if isinstance(step, ON_CANDIDATES)]
    assert {type(step) for step in steps} == set(ON_CANDIDATES)
    torch.manual_seed(5)
    raw = 3 * torch.randn(2, vocab)
    candidates = torch.stack([torch.randperm(vocab)[: vocab // 2].sort().values for _ in "ab"])
    for step in steps:
        full = step(state, raw).gather(-1, candidates)
        alone = on_candidates(step, state, raw.gather(-1, candidates), candidates)
        assert alone is not None and torch.equal(alone, full), type(step).__name__
        raw = step(state, raw)
    assert seen == [tokenizer.decode(ids[4:]), tokenizer.decode(ids[:-3][30:])] * 3


def test_argmax_rows_takes_the_first_of_equals() -> None:
    scores = torch.randn(3, VOCAB)
    scores[1, 7] = scores[1, 9] = scores[1].max() + 1
    assert torch.equal(argmax_rows(scores), scores.argmax(dim=-1))
    assert int(argmax_rows(scores)[1]) == 7


class Readings:
    """What the machine reports: a load average, a count of runnable threads and, where
    given, the whole machine's busy CPU time."""

    def __init__(self, load: float | None, running: int | None, busy: bool = False) -> None:
        self.load, self.running = load, running
        self.busy: float | None = 0.0 if busy else None
        self.now = 0.0
        self.cpu = 0.0

    def budget(self, cores: int = 2) -> ThreadBudget:
        return ThreadBudget(
            most=cores,
            cores=cores,
            read_load=lambda: self.load,
            read_running=lambda: self.running,
            read_busy=lambda: self.busy,
            cpu_clock=lambda: self.cpu,
            wall_clock=lambda: self.now,
        )


def test_thread_budget_uses_the_cores_others_leave_free() -> None:
    assert Readings(0.1, 1).budget().threads(current=1) == 2  # a quiet machine
    assert Readings(7.5, 9).budget().threads(current=2) == 1  # two busy cores
    assert Readings(3.0, 4).budget(cores=8).threads(current=1) == 5
    assert Readings(0.2, 6).budget().threads(current=2) == 1  # others just started
    assert Readings(None, None).budget().threads(current=1) == 2  # nothing reported
    assert Readings(0.9, None).budget().threads(current=1) == 1  # a core mostly taken


def test_thread_budget_follows_the_machines_busy_time_during_a_decode() -> None:
    """Between two looks, others' share is the machine's busy time less this process's:
    a finished program is forgotten at once (the load average would remember it for a
    minute), one that starts is seen at the next look."""
    readings = Readings(load=1.9, running=1, busy=True)
    budget = readings.budget()
    assert budget.threads(current=1) == 2  # the start: nothing else runnable
    for _ in range(3):  # this decode keeps both cores busy: its own load
        readings.now += 0.5
        readings.cpu += 1.0
        assert readings.busy is not None
        readings.busy += 1.0
        assert budget.threads(current=2) == 2
    readings.now += 0.5  # another program takes one core, this decode gets the other
    readings.cpu += 0.5
    readings.busy += 1.0
    assert budget.threads(current=2) == 1
    readings.now += 0.5  # it has stopped
    readings.cpu += 0.5
    readings.busy += 0.5
    assert budget.threads(current=1) == 2
    readings.now += 60.0  # a look long ago says nothing: back to the runnable count
    readings.busy += 100.0
    readings.running = 4
    assert budget.threads(current=1) == 1


def test_thread_budget_does_not_count_its_own_decoding_as_load() -> None:
    """While this process keeps both cores busy, the load average rises with it: that load
    is its own, and it keeps both threads; a program that then joins it is someone else."""
    readings = Readings(0.0, None)  # where only a load average is reported
    budget = readings.budget()
    decay = math.exp(-5 / 60)  # the kernel's 1-minute average, updated every 5 s
    load = 0.0
    for _ in range(24):  # two minutes of decoding on both cores
        readings.now += 5.0
        readings.cpu += 10.0
        readings.load = load = load * decay + 2.0 * (1 - decay)
        assert budget.threads(current=2) == 2
    for _ in range(6):  # a busy program starts: the load climbs above this process's own
        readings.now += 5.0
        readings.cpu += 5.0  # it now gets half the machine
        readings.load = load = load * decay + 3.0 * (1 - decay)
    assert budget.threads(current=2) == 1


@pytest.fixture(scope="module")
def engine() -> LlamaCppEngine:
    return LlamaCppEngine.load(default_model_path(), name="default")


def test_text_does_not_depend_on_llama_threads(engine: LlamaCppEngine) -> None:
    """The thread count changes with the load during a decode; the text must not."""
    params = SamplingParams(
        temperature=0.8, top_k=64, top_p=0.95, presence_penalty=0.1, max_new_tokens=40
    )
    prompt = "The lighthouse keeper climbed the stairs"
    fixed = ThreadBudget(
        most=1, read_load=lambda: 0.0, read_running=lambda: 0, read_busy=lambda: None
    )
    engine.thread_budget = fixed
    engine.llama.reset()
    one_thread = engine.complete(prompt, params, seed=3)[0]
    flips = iter([0, 9] * 100)  # runnable threads: none, then many
    engine.thread_budget = ThreadBudget(
        most=2, cores=2, read_load=lambda: 0.0, read_running=lambda: next(flips),
        read_busy=lambda: None,
    )  # fmt: skip
    chosen: list[int] = []
    source = engine.logits_source()
    step = source.step

    def counting_step(tokens: torch.Tensor) -> torch.Tensor:
        chosen.append(source.threads)
        return step(tokens)

    source.step = counting_step  # type: ignore[method-assign]
    engine.logits_source = lambda params=None: source  # type: ignore[method-assign]
    engine.llama.reset()
    try:
        varying = engine.complete(prompt, params, seed=3)[0]
    finally:
        del engine.logits_source
        engine.thread_budget = ThreadBudget(most=1)
    assert {1, 2} <= set(chosen), chosen
    assert varying.token_ids == one_thread.token_ids
    assert varying.text == one_thread.text


def test_choosing_runs_on_one_torch_thread(engine: LlamaCppEngine) -> None:
    seen: list[int] = []

    def record_threads(state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return scores

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        engine.complete("Once", SamplingParams(max_new_tokens=3), [record_threads])
        assert seen == [1, 1, 1]
        assert torch.get_num_threads() == 2, "restored afterwards"
    finally:
        torch.set_num_threads(before)
