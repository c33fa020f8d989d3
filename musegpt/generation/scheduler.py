"""Continuous batching for MuseGPT models: many decodes share one forward pass per step.

Each request runs the ordinary `Decoder` (samplers, banned phrases with backtracking, stop
strings, log-probabilities: nothing is reimplemented here) in its own thread, against a
`LogitsSource` that forwards its calls to a `BatchScheduler`. The scheduler waits until
every running request has asked for its next logits, then serves all of them at once:

- rows that ask to `step` share one forward pass over one left-padded KV cache;
- rows that ask to `prefill` (a new request, or one rebuilding after a backtrack or a
  slide) are prefilled together in a second pass, and their cache is merged into the
  shared one, so they join the running batch at the next step.

Merging right-aligns both caches and adds the shift to each row's left padding. Padding
is masked and real positions are counted from the first real token, so a row's keys and
values stay valid wherever they sit.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from musegpt.model.gpt import GPT
from musegpt.model.kv_cache import KVCache


class Cancelled(RuntimeError):
    """Raised inside a request's decoder when it was cancelled (client gone, timeout)."""


@dataclass(eq=False)
class Ticket:
    """One request's place in the batch: what it asked for, and the answer."""

    cancel: threading.Event
    op: Literal["prefill", "step"] | None = None
    windows: list[list[int]] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    keep: list[int] | None = None  # rows kept since the last pass (applied lazily)
    left: bool = False
    length: int = 0  # longest row's cached tokens: what room_left counts
    result: torch.Tensor | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class BatchScheduler:
    """One model, one shared KV cache, one forward pass per step for every request."""

    def __init__(self, model: GPT) -> None:
        self.model = model
        self.block_size = model.config.block_size
        self.device = model.wte.weight.device
        self._cond = threading.Condition()
        self._tickets: list[Ticket] = []
        self._cache: KVCache | None = None
        self._padding = torch.zeros(0, dtype=torch.long)
        self._owners: list[tuple[Ticket, int]] = []  # (request, its row) per cache row
        self.steps = 0  # forward passes served (for /metrics)
        self.rows_stepped = 0  # rows in those passes: rows_stepped / steps = mean batch
        self._thread = threading.Thread(target=self._loop, name="batch-scheduler", daemon=True)
        self._thread.start()

    # -- what requests call -------------------------------------------------------------

    def source(self, cancel: threading.Event | None = None) -> ScheduledSource:
        """A fresh `LogitsSource` for one decode, served by this scheduler."""
        ticket = Ticket(cancel or threading.Event())
        with self._cond:
            self._tickets.append(ticket)
        return ScheduledSource(self, ticket)

    @property
    def active(self) -> int:
        """Requests decoding now (the batch's width in requests)."""
        with self._cond:
            return sum(1 for t in self._tickets if not t.left)

    def _ask(self, ticket: Ticket, op: Literal["prefill", "step"]) -> torch.Tensor:
        if ticket.cancel.is_set():
            raise Cancelled("request cancelled")
        with self._cond:
            # Set under the lock: the loop must never see the op before `done` is cleared.
            ticket.done.clear()
            ticket.op = op
            self._cond.notify_all()
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        result, ticket.result = ticket.result, None
        return result

    def _leave(self, ticket: Ticket) -> None:
        with self._cond:
            ticket.left = True
            ticket.op = None
            self._cond.notify_all()

    # -- the loop -----------------------------------------------------------------------

    def _ready(self) -> bool:
        live = [t for t in self._tickets if not t.left]
        if not live:
            return bool(self._tickets)  # only departures: their rows must still go
        return all(t.op is not None for t in live)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._ready)
                tickets = list(self._tickets)
                self._tickets = [t for t in tickets if not t.left]
            try:
                self._serve(tickets)
            except Exception as err:  # a failed pass fails its requests, not the server
                self._fail(tickets, err)

    @torch.no_grad()
    def _serve(self, tickets: list[Ticket]) -> None:
        self._drop_rows(tickets)
        steppers = [t for t in tickets if t.op == "step" and not t.left]
        fillers = [t for t in tickets if t.op == "prefill" and not t.left]
        if steppers:
            self._step(steppers)
        if fillers:
            self._prefill(fillers)
        for ticket in steppers + fillers:
            ticket.op = None
            ticket.done.set()

    def _fail(self, tickets: list[Ticket], err: Exception) -> None:
        self._cache, self._owners = None, []
        self._padding = torch.zeros(0, dtype=torch.long)
        for ticket in tickets:
            if not ticket.left:
                ticket.error, ticket.op = err, None
                ticket.done.set()

    def _drop_rows(self, tickets: list[Ticket]) -> None:
        """Apply every request's pending `keep_rows`, departures and rebuilds to the cache."""
        kept: dict[int, dict[int, int]] = {}  # id(ticket) -> old row -> new row
        for ticket in tickets:
            if ticket.keep is not None:
                kept[id(ticket)] = {old: new for new, old in enumerate(ticket.keep)}
                ticket.keep = None
        index: list[int] = []
        owners: list[tuple[Ticket, int]] = []
        for position, (ticket, row) in enumerate(self._owners):
            if ticket.left or ticket.op == "prefill":
                continue
            mapping = kept.get(id(ticket))
            if mapping is not None:
                if row not in mapping:
                    continue
                row = mapping[row]
            index.append(position)
            owners.append((ticket, row))
        if len(index) == len(self._owners):
            self._owners = owners
            return
        self._owners = owners
        if not index:
            self._cache, self._padding = None, torch.zeros(0, dtype=torch.long)
            return
        rows = torch.tensor(index, dtype=torch.long, device=self.device)
        assert self._cache is not None
        self._cache.select(rows)
        self._padding = self._padding.index_select(0, rows)

    def _step(self, steppers: list[Ticket]) -> None:
        assert self._cache is not None
        if self._cache.length + 1 > self.block_size:
            self._compact()
        tokens = torch.tensor(
            [ticket.tokens[row] for ticket, row in self._owners], dtype=torch.long
        )
        padding = self._padding if bool(self._padding.any()) else None
        out = self.model(
            tokens.view(-1, 1).to(self.device),
            cache=self._cache,
            last_only=True,
            left_padding=padding,
        )
        self.steps += 1
        self.rows_stepped += len(self._owners)
        self._hand_out(out.logits[:, -1, :], self._owners, steppers)
        for ticket in steppers:
            ticket.length += 1

    def _compact(self) -> None:
        """Drop the leading cache columns that are padding in every row."""
        assert self._cache is not None
        shift = int(self._padding.min())
        cache = self._cache
        for layer in range(len(cache.keys)):
            cache.keys[layer] = cache.keys[layer].roll(-shift, dims=2)
            cache.values[layer] = cache.values[layer].roll(-shift, dims=2)
        cache.length -= shift
        self._padding = self._padding - shift

    def _prefill(self, fillers: list[Ticket]) -> None:
        owners = [(t, row) for t in fillers for row in range(len(t.windows))]
        windows = [t.windows[row] for t, row in owners]
        longest = max(len(w) for w in windows)
        batch = torch.zeros(len(windows), longest, dtype=torch.long)
        for i, window in enumerate(windows):
            batch[i, longest - len(window) :] = torch.tensor(window, dtype=torch.long)
        padding = torch.tensor([longest - len(w) for w in windows], device=self.device)
        cache = self.model.new_cache(len(windows))
        out = self.model(
            batch.to(self.device),
            cache=cache,
            last_only=True,
            left_padding=padding if bool(padding.any()) else None,
        )
        for ticket in fillers:
            ticket.length = max(len(w) for w in ticket.windows)
        self._hand_out(out.logits[:, -1, :], owners, fillers)
        self._merge(cache, padding, owners)

    def _merge(
        self, cache: KVCache, padding: torch.Tensor, owners: list[tuple[Ticket, int]]
    ) -> None:
        """Right-align the new rows' cache with the shared one and stack them."""
        if self._cache is None:
            self._cache, self._padding, self._owners = cache, padding, owners
            return
        old = self._cache
        length = max(old.length, cache.length)
        merged = self.model.new_cache(len(self._owners) + len(owners))
        for layer in range(len(merged.keys)):
            pairs = ((merged.keys, old.keys, cache.keys), (merged.values, old.values, cache.values))
            for target, first, second in pairs:
                rows = first[layer].shape[0]
                target[layer][:rows, :, length - old.length : length] = first[layer][
                    :, :, : old.length
                ]
                target[layer][rows:, :, length - cache.length : length] = second[layer][
                    :, :, : cache.length
                ]
        merged.length = length
        self._padding = torch.cat(
            [self._padding + (length - old.length), padding + (length - cache.length)]
        )
        self._cache = merged
        self._owners = self._owners + owners

    @staticmethod
    def _hand_out(
        logits: torch.Tensor, owners: list[tuple[Ticket, int]], tickets: list[Ticket]
    ) -> None:
        """Give each request its own rows of `logits`, in its own row order."""
        positions: dict[int, list[tuple[int, int]]] = {}
        for position, (ticket, row) in enumerate(owners):
            positions.setdefault(id(ticket), []).append((row, position))
        for ticket in tickets:
            order = [p for _, p in sorted(positions[id(ticket)])]
            ticket.result = logits[order]


class ScheduledSource:
    """The `LogitsSource` one decode sees; its calls are served by the shared scheduler."""

    def __init__(self, scheduler: BatchScheduler, ticket: Ticket) -> None:
        self.scheduler = scheduler
        self.ticket = ticket

    @property
    def context_length(self) -> int:
        return self.scheduler.block_size

    def prefill(self, windows: Sequence[Sequence[int]]) -> torch.Tensor:
        self.ticket.windows = [list(w) for w in windows]
        self.ticket.keep = None  # a rebuild replaces every row this request had
        return self.scheduler._ask(self.ticket, "prefill")

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.ticket.tokens = [int(t) for t in tokens.tolist()]
        return self.scheduler._ask(self.ticket, "step")

    def keep_rows(self, rows: Sequence[int]) -> None:
        kept = self.ticket.keep
        self.ticket.keep = list(rows) if kept is None else [kept[r] for r in rows]

    def room_left(self) -> int:
        return self.scheduler.block_size - self.ticket.length

    def close(self) -> None:
        """The decode is over (finished, failed or cancelled): its rows leave the batch."""
        self.scheduler._leave(self.ticket)
