"""Streams through an engine: each text delta, with the tokens it completes (their ids,
exact bytes and log-probabilities: see `Delta`), handed to the caller as it is made."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from musegpt.engines.base import Engine
from musegpt.generation.decoder import Completion, Delta
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import LogitsProcessor


def stream_engine(
    engine: Engine,
    emit: Callable[[Delta], None],
    prompts: Sequence[str],
    params: SamplingParams,
    constraints: Sequence[LogitsProcessor],
    cancel: threading.Event,
) -> list[Completion]:
    """`engine.decode_deltas` with each delta handed to `emit`; returns the completions."""
    completions: list[Completion] = []
    for delta in engine.decode_deltas(prompts, params, constraints, cancel, completions):
        emit(delta)
    return completions
