"""Continuous batching gives exactly what a request decoded alone gives."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from test_server_helpers import tiny_engine

from musegpt.generation.decoder import Completion, Decoder, Delta
from musegpt.generation.params import SamplingParams
from musegpt.generation.scheduler import BatchScheduler
from musegpt.model import kv_cache


def _alone(prompts: list[str], params: SamplingParams) -> list[Completion]:
    engine = tiny_engine()
    return engine.complete(prompts, params)


@pytest.mark.parametrize("fresh_memory", ["as allocated", "NaN"])
def test_concurrent_requests_match_decoding_alone(
    fresh_memory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fresh_memory == "NaN":  # cache memory is never cleared: prove no stale byte is read
        monkeypatch.setattr(
            kv_cache,
            "uninitialized",
            lambda shape, dtype, device: torch.full(shape, math.nan, dtype=dtype, device=device),
        )
    engine = tiny_engine()
    scheduler = BatchScheduler(engine.model)
    requests = [
        (["The sea"], SamplingParams(max_new_tokens=30, temperature=0)),
        (["She opened the door, and", "x"], SamplingParams(max_new_tokens=20, temperature=0)),
        (["wind"], SamplingParams(max_new_tokens=90, temperature=0.9, seed=3, n=2)),  # slides
        (["gulls"], SamplingParams(max_new_tokens=25, temperature=0, banned=["the"])),
        (["moon"], SamplingParams(max_new_tokens=12, temperature=0, stop=["e"], logprobs=2)),
    ]
    results: dict[int, list[Completion]] = {}

    def run(i: int) -> None:
        source = scheduler.source()
        decoder = Decoder(source, engine.tokenizer, engine.overflow)
        results[i] = scheduler.run(source, decoder.start(*requests[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, (prompts, params) in enumerate(requests):
        expected = _alone(prompts, params)
        got = results[i]
        assert [c.text for c in got] == [c.text for c in expected], i
        assert [c.finish_reason for c in got] == [c.finish_reason for c in expected]
        if params.logprobs:
            assert got[0].logprobs is not None and expected[0].logprobs is not None
            for a, b in zip(got[0].logprobs, expected[0].logprobs, strict=True):
                assert a.token_id == b.token_id
                assert abs(a.logprob - b.logprob) < 1e-4
    assert scheduler.rows_stepped > scheduler.steps  # rows really shared forward passes
    assert scheduler.active == 0


def test_cancelled_request_leaves_the_batch() -> None:
    engine = tiny_engine()
    scheduler = BatchScheduler(engine.model)
    cancel = threading.Event()
    source = scheduler.source(cancel)
    decoder = Decoder(source, engine.tokenizer)
    params = SamplingParams(max_new_tokens=50, temperature=0)
    pieces: list[str] = []

    def on_delta(delta: Delta) -> None:
        pieces.append(delta.text)
        cancel.set()  # the client went away after the first piece

    out = scheduler.run(source, decoder.start("The", params, (), cancel), on_delta)
    assert out[0].finish_reason == "cancelled" and len(out[0].token_ids) < 50
    assert "".join(pieces) == out[0].text  # what was streamed is what was made
    other = scheduler.source()
    job = Decoder(other, engine.tokenizer).start("sea", SamplingParams(max_new_tokens=5))
    assert len(scheduler.run(other, job)[0].token_ids) == 5
    assert scheduler.active == 0


def test_a_failing_request_fails_alone() -> None:
    engine = tiny_engine()
    scheduler = BatchScheduler(engine.model)
    source = scheduler.source()

    def broken_sink(delta: Delta) -> None:
        raise OSError("the client's socket is gone")

    job = Decoder(source, engine.tokenizer).start("The", SamplingParams(max_new_tokens=20))
    with pytest.raises(OSError, match="socket"):
        scheduler.run(source, job, broken_sink)
    other = scheduler.source()
    job = Decoder(other, engine.tokenizer).start("sea", SamplingParams(max_new_tokens=5))
    assert len(scheduler.run(other, job)[0].token_ids) == 5
