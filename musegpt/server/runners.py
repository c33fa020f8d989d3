"""How a loaded model serves many requests at once.

MuseGPT models: one `BatchScheduler`, so concurrent requests share every forward pass
(continuous batching). Every other backend (llama.cpp, transformers) decodes one row at a
time: a bounded pool of engines (each one context), one request per engine at a time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from musegpt.engines.base import Engine
from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.generation.decoder import Completion, Decoder, Delta
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import LogitsProcessor
from musegpt.generation.scheduler import BatchScheduler
from musegpt.server.streaming import stream_engine


class Runner:
    """Completes and streams requests on one model; `capacity` requests run at once."""

    def __init__(self, engine: Engine, capacity: int) -> None:
        self.engine = engine
        self.capacity = capacity

    def complete(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        cancel: threading.Event,
        constraints: Sequence[LogitsProcessor] = (),
    ) -> list[Completion]:
        """The whole completions; cancelling `cancel` (a timeout) stops the decode."""
        return self.stream_into(_ignore, prompts, params, cancel, constraints)

    def stream_into(
        self,
        emit: Callable[[Delta], None],
        prompts: Sequence[str],
        params: SamplingParams,
        cancel: threading.Event,
        constraints: Sequence[LogitsProcessor] = (),
    ) -> list[Completion]:
        """Decode, handing each text delta to `emit` as it is made (from whichever thread
        makes it); return the completions when the decode is over."""
        raise NotImplementedError

    @contextmanager
    def borrow(self) -> Iterator[Engine]:
        """An engine for a whole studio task (which decodes many times)."""
        yield self.engine

    @property
    def batch_stats(self) -> tuple[int, int]:
        """(forward passes, rows in them) for the mean batch size in /metrics."""
        return (0, 0)


class BatchingRunner(Runner):
    """A MuseGPT model behind a continuous-batching scheduler."""

    def __init__(self, engine: MuseGPTEngine, capacity: int) -> None:
        super().__init__(engine, capacity)
        self.scheduler = BatchScheduler(engine.model)

    def stream_into(
        self,
        emit: Callable[[Delta], None],
        prompts: Sequence[str],
        params: SamplingParams,
        cancel: threading.Event,
        constraints: Sequence[LogitsProcessor] = (),
    ) -> list[Completion]:
        source = self.scheduler.source(cancel)
        index = self.engine.copy_index(params)
        decoder = Decoder(source, self.engine.tokenizer, self.engine.overflow, index)
        job = decoder.start(list(prompts), params, constraints, cancel)
        return self.scheduler.run(source, job, emit)

    @property
    def batch_stats(self) -> tuple[int, int]:
        return (self.scheduler.steps, self.scheduler.rows_stepped)


class PoolRunner(Runner):
    """A bounded pool of engines of one model; each serves one request at a time."""

    def __init__(self, engines: Sequence[Engine]) -> None:
        super().__init__(engines[0], len(engines))
        self._free: queue.Queue[Engine] = queue.Queue()
        for engine in engines:
            self._free.put(engine)

    @contextmanager
    def borrow(self) -> Iterator[Engine]:
        engine = self._free.get()
        try:
            yield engine
        finally:
            self._free.put(engine)

    def stream_into(
        self,
        emit: Callable[[Delta], None],
        prompts: Sequence[str],
        params: SamplingParams,
        cancel: threading.Event,
        constraints: Sequence[LogitsProcessor] = (),
    ) -> list[Completion]:
        with self.borrow() as engine:
            return stream_engine(engine, emit, prompts, params, constraints, cancel)


def runner_for(engines: Sequence[Engine], max_batch_rows: int) -> Runner:
    """Continuous batching where the backend batches rows; otherwise a pool."""
    first = engines[0]
    if isinstance(first, MuseGPTEngine) and first.max_batch is None:
        return BatchingRunner(first, max_batch_rows)
    return PoolRunner(engines)


def _ignore(delta: Delta) -> None:
    """Where a whole (not streamed) completion's deltas go."""
