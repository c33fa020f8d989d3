"""Streams whose text deltas carry the log-probabilities of the tokens they hold, so a
client can show each token's probability while the text is still arriving."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from musegpt.engines.base import Engine
from musegpt.generation.decoder import Completion, Decoder, Delta, TokenLogprob, _Row
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import LogitsProcessor


@dataclass
class ScoredDelta(Delta):
    logprobs: list[TokenLogprob] = field(default_factory=list)


class ScoringDecoder(Decoder):
    """The decoder, unchanged, except that each delta names the tokens it completes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sent: dict[int, int] = {}  # row index -> tokens already attributed

    def _emit(self, row: _Row, hold: int) -> Delta | None:
        delta = super()._emit(row, hold)
        if delta is None:
            return None
        # Every token up to the last one that ends inside the text sent so far (char_ends
        # never decreases: a binary search, not a scan of the whole row at every delta).
        upto = bisect.bisect_right(row.char_ends, row.emitted)
        return self._scored(delta, row, upto)

    def _flush(self, row: _Row) -> Iterator[Delta]:
        for delta in super()._flush(row):
            yield self._scored(delta, row, len(row.logprobs))

    def _scored(self, delta: Delta, row: _Row, upto: int) -> ScoredDelta:
        start = self._sent.get(row.index, 0)
        self._sent[row.index] = max(start, upto)
        return ScoredDelta(delta.index, delta.text, delta.finish_reason, row.logprobs[start:upto])


def stream_engine(
    engine: Engine,
    emit: Callable[[Delta], None],
    prompts: Sequence[str],
    params: SamplingParams,
    constraints: Sequence[LogitsProcessor],
    cancel: threading.Event,
) -> list[Completion]:
    """`engine.decode_deltas` with scored deltas handed to `emit`; returns the completions."""
    completions: list[Completion] = []
    deltas = engine.decode_deltas(prompts, params, constraints, cancel, completions, ScoringDecoder)
    for delta in deltas:
        emit(delta)
    return completions
