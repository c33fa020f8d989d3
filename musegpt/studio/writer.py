"""`Writer`: how every studio task asks the model for text.

It derives each call's parameters from the user's `SamplingParams` (so `--seed` makes a
whole multi-call task reproducible), streams to the caller while cleaning on the fly (only
text that hygiene will keep is shown, and generation stops as soon as the model loops or
starts a new few-shot example), and returns the cleaned text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from musegpt.engines.base import Engine
from musegpt.engines.remote import RemoteEngine
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import DecodeState, LogitsProcessor, WatchText
from musegpt.studio.text import SENTENCE_END, Lang, cut_bad_tail, tidy

Sink = Callable[[str], None]
SEED_STRIDE = 7919  # a prime: call k of a task with seed s uses s + k * SEED_STRIDE


@dataclass
class Writer:
    engine: Engine
    params: SamplingParams = field(default_factory=SamplingParams)
    lang: Lang = "en"
    sink: Sink | None = None  # streamed text (a terminal, an SSE stream)
    status: Callable[[str], None] | None = None  # what the task is doing, for long work
    calls: int = 0
    decoded: int = 0  # tokens the last `write` decoded (kept in its text, or cut by tidying)
    # Decode steps the last `write` or `write_many` took: tokens chosen, kept or taken back
    # (a batch's step counts once). What a call cost, where `decoded` is what it kept.
    stepped: int = 0
    # `banned_regex` for sexual terms the writer's own text did not bring (`keep_to`).
    unasked: list[str] = field(default_factory=list)

    @property
    def steers(self) -> bool:
        """Whether token-level rules (logits processors) run on this writer's model: not
        on a remote one, which sends text only (its text is checked and re-drawn instead)."""
        return not isinstance(self.engine, RemoteEngine)

    def keep_to(self, brief: str) -> None:
        """Write nothing sexual unless `brief` (the premise, topic or text given) is."""
        from musegpt.safety.steering import unasked_patterns

        self.unasked = unasked_patterns(brief)

    def say(self, message: str) -> None:
        if self.status is not None:
            self.status(message)

    def show(self, text: str) -> None:
        if self.sink is not None and text:
            self.sink(text)

    def call_params(
        self, max_new_tokens: int, stop: Sequence[str], **extra: object
    ) -> SamplingParams:
        """The user's parameters for one model call, with its own derived seed."""
        seed = None if self.params.seed is None else self.params.seed + self.calls * SEED_STRIDE
        self.calls += 1
        update: dict[str, object] = {
            "max_new_tokens": min(max_new_tokens, self.params.max_new_tokens),
            "stop": [*self.params.stop, *stop],
            "seed": seed,
            "n": 1,
            "echo": False,
            **extra,
        }
        if self.unasked:
            update["banned_regex"] = [
                *update.get("banned_regex", self.params.banned_regex),  # type: ignore[misc]
                *self.unasked,
            ]
        return self.params.model_copy(update=update)

    def write_many(
        self,
        prompt: str,
        max_new_tokens: int,
        n: int,
        stop: Sequence[str] = (),
        labels: Sequence[str] = (),
        constraints: Sequence[LogitsProcessor] = (),
        **extra: object,
    ) -> list[str]:
        """`n` continuations of `prompt` in one request (one batch where the backend takes
        `n` rows, else one row at a time, sample s with seed + s), each cleaned but not cut
        to a sentence end; `constraints` are logits processors for every row (applied where
        the writer `steers`); `extra` are more `SamplingParams` fields for this call (e.g.
        `banned_regex`)."""
        params = self.call_params(max_new_tokens, stop, n=n, **extra)
        steps = StepCount()
        rules = [*constraints, steps] if self.steers else ()
        drafts = self.engine.complete(prompt, params, rules)
        self.stepped = steps.steps if self.steers else max(len(c.token_ids) for c in drafts)
        return [tidy(c.text, labels, clean_end=False) for c in drafts]

    def write(
        self,
        prompt: str,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        labels: Sequence[str] = (),
        stream: bool = False,
        clean_end: bool = True,
        constraints: Sequence[LogitsProcessor] = (),
        avoid: Sequence[str] = (),
        avoid_regex: Sequence[str] = (),
        until: Callable[[str], bool] | None = None,
        most_steps: int | None = None,
        view: Callable[[str], None] | None = None,
        **extra: object,
    ) -> str:
        """Continue `prompt`; the cleaned continuation. With `stream`, clean text is sent to
        the sink sentence by sentence as it is written. Phrases in `avoid` (the few-shot
        examples' own lines) and matches of `avoid_regex` (their word runs, `echo_pattern`)
        never appear: decoding backtracks around them. Decoding stops once `until(text so
        far)` holds (e.g. a chapter draft that has gone on too long with nothing kept), or
        after `most_steps` decode steps, the tokens taken back included (a budget that
        take-backs cannot stretch; on a remote model, which takes nothing back, tokens).
        `view`, in place of `stream`, is given the tidied text so far after every delta:
        for a caller that shows its own cleaning of it (`screen.KeptScreen`)."""
        if avoid:
            extra["banned"] = [*self.params.banned, *avoid]
        if avoid_regex:
            extra["banned_regex"] = [*self.params.banned_regex, *avoid_regex]
        params = self.call_params(max_new_tokens, stop, **extra)
        cancel = threading.Event()

        def watch(text: str) -> None:
            if len(cut_bad_tail(text, labels)) < len(text):
                cancel.set()  # the model looped or began a new example: stop paying for it
            elif until is not None and until(text):
                cancel.set()

        # Locally, the decode itself is watched, text held back from the stream included
        # (`WatchText`); a remote model is watched through its stream.
        local = self.steers
        steps = StepCount(cancel, most_steps)
        if local:
            constraints = [*constraints, WatchText(self.engine.tokenizer, watch), steps]
        elif most_steps is not None:  # a remote model takes nothing back: its steps are tokens
            most = min(params.max_new_tokens, most_steps)
            params = params.model_copy(update={"max_new_tokens": most})
        raw = ""
        shown = 0
        self.decoded = 0
        for delta in self.engine.stream_deltas(prompt, params, constraints, cancel):
            raw += delta.text
            self.decoded += len(delta.token_ids)
            if not local:
                watch(raw)
            if view is not None:
                view(tidy(raw, labels, clean_end=False))
            elif stream:
                kept = tidy(raw, labels, clean_end=False)
                ends = [m.end() for m in SENTENCE_END.finditer(kept)]
                upto = max(ends, default=0)
                if "\n" in kept[shown:]:
                    upto = max(upto, kept.rfind("\n"))
                if upto > shown:
                    self.show(kept[shown:upto])
                    shown = upto
        if not local and raw and not self.decoded:  # a remote's stream carries text, not ids
            self.decoded = len(self.engine.tokenizer.encode(raw))
        self.stepped = steps.steps if local else self.decoded
        final = tidy(raw, labels, clean_end=clean_end)
        if stream and len(final) > shown:
            self.show(final[shown:])
        return final


class StepCount:
    """Changes no score: counts a decode's steps (each a token chosen for every row, kept or
    later taken back) and, with `most`, sets `cancel` at the `most`-th, so the decode ends
    there: a bound on what a call costs that no number of take-backs can stretch."""

    def __init__(self, cancel: threading.Event | None = None, most: int | None = None) -> None:
        self.cancel, self.most, self.steps = cancel, most, 0

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        if self.cancel is not None and self.most is not None and self.steps >= self.most:
            self.cancel.set()
        return scores
