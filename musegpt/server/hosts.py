"""The models a server offers: loading in the background, admission, and the bridge from
blocking decodes (worker threads) to async handlers."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from fastapi.responses import StreamingResponse

from musegpt.engines.base import Engine
from musegpt.server.errors import APIError
from musegpt.server.model_kinds import ModelKind, model_kind
from musegpt.server.runners import Runner, runner_for

T = TypeVar("T")
# An engine ready now, or a loader run in the background (several engines = a pool).
EngineSource = Engine | Callable[[], Engine | Sequence[Engine]]


class ModelHost:
    """One model: its runner once loaded, and how many requests wait for or use it."""

    def __init__(self, name: str, max_queue: int, max_batch_rows: int) -> None:
        self.name = name
        self.max_queue = max_queue
        self.max_batch_rows = max_batch_rows
        self.runner: Runner | None = None
        self.kind: ModelKind = "text"  # what it makes, known once it is loaded
        self.error: str | None = None
        self.queued = 0
        self.running = 0
        self._slots: asyncio.Semaphore | None = None

    def load(self, source: EngineSource) -> None:
        try:
            loaded = source if isinstance(source, Engine) else source()
            engines = [loaded] if isinstance(loaded, Engine) else list(loaded)
            self.kind = model_kind(engines[0])
            self.runner = runner_for(engines, self.max_batch_rows)
        except Exception as err:  # reported by every request until fixed
            self.error = f"model {self.name!r} failed to load: {err}"

    def ready(self) -> Runner:
        if self.runner is not None:
            return self.runner
        if self.error is not None:
            raise APIError(503, self.error, "model", "model_load_failed")
        raise APIError(
            503, f"model {self.name!r} is still loading; retry shortly", "model", "model_loading"
        )

    def reserve(self) -> Admission:
        """A place now, or 429 when `max_queue` requests already wait for a free slot (one
        that can start at once, or is about to, is not waiting)."""
        runner = self.ready()
        if not self._free(runner.capacity) and self.waiting(runner.capacity) >= self.max_queue:
            raise APIError(
                429, f"too many requests waiting for {self.name!r}; retry later", None, "queue_full"
            )
        if self._slots is None:
            self._slots = asyncio.Semaphore(runner.capacity)
        self.queued += 1
        return Admission(self, self._slots)

    def waiting(self, capacity: int) -> int:
        """Admitted requests that cannot start until a running one ends."""
        return max(self.queued + self.running - capacity, 0)

    def _free(self, capacity: int) -> bool:
        """Whether one more request would start at once."""
        return self.queued + self.running < capacity

    def stats(self) -> tuple[int, int, int, int]:
        runner = self.runner
        steps, rows = runner.batch_stats if runner is not None else (0, 0)
        waiting = self.waiting(runner.capacity) if runner is not None else self.queued
        return (waiting, self.running, steps, rows)


@dataclass
class Admission:
    host: ModelHost
    slots: asyncio.Semaphore
    started: bool = False
    ended: bool = False

    async def start(self, deadline: float) -> None:
        try:
            await asyncio.wait_for(self.slots.acquire(), max(deadline - time.monotonic(), 0))
        except TimeoutError:
            self.end()
            raise APIError(504, "timed out waiting for the model", None, "timeout") from None
        self.host.queued -= 1
        self.host.running += 1
        self.started = True

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.started:
            self.host.running -= 1
            self.slots.release()
        else:
            self.host.queued -= 1


def event_stream(events: AsyncIterator[str], admission: Admission) -> StreamingResponse:
    """An SSE response holding `admission` until its events end. A client gone before the
    body starts never runs the generator's `finally`, so the place in the queue is also
    given back when the generator is collected."""
    weakref.finalize(events, admission.end)
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


class Models:
    """Name -> host; the first model is the default (a request may omit `model`)."""

    def __init__(self, sources: Mapping[str, EngineSource], max_queue: int, max_rows: int) -> None:
        if not sources:
            raise ValueError("a server needs at least one model")
        self.sources = dict(sources)
        self.hosts = {name: ModelHost(name, max_queue, max_rows) for name in sources}
        self.default = next(iter(sources))
        self.max_queue, self.max_rows = max_queue, max_rows

    def add(self, name: str, source: EngineSource) -> ModelHost:
        """Host one more model while serving (an adapter trained by the server), loaded on
        the caller's thread; a model of that name is replaced (requests it runs finish)."""
        host = ModelHost(name, self.max_queue, self.max_rows)
        host.load(source)
        # New dicts, not changed ones: a request may be iterating the old ones right now.
        self.sources = {**self.sources, name: source}
        self.hosts = {**self.hosts, name: host}
        return host

    def include(self, name: str, source: EngineSource) -> None:
        """Host one more model, loaded with the others by `load_all` (before the server
        starts: a restored adapter); a name already hosted keeps its model."""
        if name not in self.hosts:
            self.sources[name] = source
            self.hosts[name] = ModelHost(name, self.max_queue, self.max_rows)

    def load_all(self) -> None:
        """Engines given ready are hosted now; loaders run on a background thread."""
        waiting = []
        for name, source in self.sources.items():
            if isinstance(source, Engine):
                self.hosts[name].load(source)
            else:
                waiting.append(name)
        if waiting:
            threading.Thread(
                target=self._load_each,
                args=(waiting,),
                name="model-loader",
                daemon=True,
            ).start()

    def _load_each(self, names: list[str]) -> None:
        for name in names:
            self.hosts[name].load(self.sources[name])

    def get(self, name: str | None) -> ModelHost:
        if not name or name == "default":
            return self.hosts[self.default]
        host = self.hosts.get(name)
        if host is None:
            known = ", ".join(self.hosts)
            raise APIError(
                404,
                f"the model {name!r} does not exist (this server has: {known})",
                "model",
                "model_not_found",
            )
        return host


async def in_thread(fn: Callable[[], T], cancel: threading.Event, deadline: float) -> T:
    """Run a blocking call on a worker thread; past the deadline cancel it and answer 504."""
    task = asyncio.get_running_loop().run_in_executor(None, fn)
    try:
        return await asyncio.wait_for(asyncio.shield(task), max(deadline - time.monotonic(), 0))
    except TimeoutError:
        cancel.set()
        raise APIError(504, "the request timed out", None, "timeout") from None
    except asyncio.CancelledError:
        cancel.set()  # the client went away
        raise


_END = object()


class _Mailbox:
    """Hands items from other threads to one event loop's queues, waking the loop once per
    burst instead of once per item: the batch scheduler emits a delta for every request at
    every step, and each wake-up costs the loop a system call and a turn of its own."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Queue[object], object]] = []

    def post(self, queue: asyncio.Queue[object], item: object) -> None:
        with self._lock:
            wake = not self._items
            self._items.append((queue, item))
        if wake:
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for queue, item in items:
            queue.put_nowait(item)


_MAILBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = (
    weakref.WeakKeyDictionary()
)


def _mailbox(loop: asyncio.AbstractEventLoop) -> _Mailbox:
    box = _MAILBOXES.get(loop)
    if box is None:
        box = _MAILBOXES[loop] = _Mailbox(loop)
    return box


async def run_emitting(
    produce: Callable[[Callable[[T], None]], None], cancel: threading.Event
) -> AsyncIterator[T]:
    """Run `produce(emit)` on its own thread and yield what it emits, as it emits it."""
    mailbox = _mailbox(asyncio.get_running_loop())
    items: asyncio.Queue[object] = asyncio.Queue()

    def emit(item: T) -> None:
        mailbox.post(items, item)

    def pump() -> None:
        try:
            produce(emit)
        except BaseException as err:  # handed to the reader, raised there
            mailbox.post(items, _Failure(err))
        mailbox.post(items, _END)

    threading.Thread(target=pump, name="decode", daemon=True).start()
    try:
        while True:
            item = await items.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        cancel.set()


@dataclass
class _Failure:
    error: BaseException
