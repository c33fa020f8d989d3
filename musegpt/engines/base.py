"""The one engine interface every backend (MuseGPT, llama.cpp, transformers) presents.

An engine is a tokenizer plus a source of next-token logits. Decoding itself (samplers,
constraints, banned phrases with backtracking, stop strings, UTF-8-safe streaming) is the
generation engine's `Decoder`, shared by all backends, so every `SamplingParams` field and
every constraint behaves the same whichever model answers.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from musegpt.generation.decoder import (
    Completion,
    Decoder,
    Delta,
    LogitsSource,
    OverflowPolicy,
)
from musegpt.generation.params import MAX_SEED, SamplingParams
from musegpt.generation.processors import LogitsProcessor
from musegpt.originality.index import CopyIndex, CopyIndexError
from musegpt.tokenizer.base import Tokenizer


class EngineError(ValueError):
    """A model that cannot be loaded, or a request an engine cannot honour."""


class NoCopyIndex(EngineError):
    """`max_copy` asked of a model whose training corpus is not indexed (a bad request)."""


class BackendTokenizer(Tokenizer):
    """A backend's own tokenizer presented through MuseGPT's tokenizer contract (pieces as
    exact bytes), so the decoder's streaming and every constraint work on it unchanged.
    Subclasses give `encode` and `token_bytes`; it is saved with its model, never alone."""

    def __init__(self, vocab_size: int, eot_id: int, source: str) -> None:
        self._vocab_size = vocab_size  # the model's output width
        self._eot_id = eot_id
        self.source = source

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def eot_id(self) -> int:
        return self._eot_id

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokenizer:
        raise EngineError(f"a {cls.kind} tokenizer is loaded with its model, not on its own")


@dataclass(frozen=True)
class EngineInfo:
    """What `musegpt models` and the server's /v1/models show about a loaded engine."""

    name: str
    backend: str  # "musegpt", "llama.cpp" or "transformers"
    path: str
    context_length: int
    vocab_size: int


def with_overrides(params: SamplingParams | None, overrides: dict[str, Any]) -> SamplingParams:
    """`params` with keyword overrides applied, validated like any other SamplingParams."""
    base = params.model_dump() if params is not None else {}
    return SamplingParams(**{**base, **overrides})


class Engine(ABC):
    """A model ready to write: complete, stream, tokenize, and raw next-token logits."""

    backend: ClassVar[str]
    # Rows one logits source decodes at once; None = any number (batched in one forward).
    max_batch: ClassVar[int | None] = None

    def __init__(self, name: str, path: str, overflow: OverflowPolicy = "slide") -> None:
        self.name = name
        self.path = path
        self.overflow: OverflowPolicy = overflow
        # A backend's model state (KV cache, llama.cpp context) serves one decode at a time.
        self.lock = threading.RLock()

    # -- what a backend provides ------------------------------------------------------------

    @property
    @abstractmethod
    def tokenizer(self) -> Tokenizer: ...

    @property
    @abstractmethod
    def context_length(self) -> int: ...

    @abstractmethod
    def logits_source(self, params: SamplingParams | None = None) -> LogitsSource:
        """A fresh source of next-token logits for one decode with `params`."""

    # -- shared behaviour -------------------------------------------------------------------

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            self.name, self.backend, self.path, self.context_length, self.tokenizer.vocab_size
        )

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def copy_index(self, params: SamplingParams) -> CopyIndex | None:
        """The index of the model's training corpus that `params.max_copy` is enforced
        against (docs/originality.md); None when the request sets no max_copy."""
        if params.max_copy is None:
            return None
        from musegpt.originality.store import index_for_model

        try:
            return index_for_model(self.path, self.tokenizer, self.name)
        except CopyIndexError as err:
            raise NoCopyIndex(str(err)) from None

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    @torch.no_grad()
    def next_token_logits(self, ids: Sequence[int]) -> torch.Tensor:
        """Raw logits (vocab,) for the token after `ids` (the most recent context tokens)."""
        if not ids:
            raise EngineError("next_token_logits needs at least one token")
        window = list(ids)[-(self.context_length - 1) :]
        with self.lock:
            return self.logits_source(SamplingParams()).prefill([window])[0].float().clone()

    def complete(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams | None = None,
        constraints: Sequence[LogitsProcessor] = (),
        **overrides: Any,
    ) -> list[Completion]:
        """Every completion (n per prompt) with token ids, finish reason and log-probs."""
        params = with_overrides(params, overrides)
        completions: list[Completion] = []
        for _ in self.decode_deltas(prompts, params, constraints, None, completions):
            pass
        return completions

    def generate(
        self,
        prompt: str,
        params: SamplingParams | None = None,
        constraints: Sequence[LogitsProcessor] = (),
        **overrides: Any,
    ) -> str:
        """The text of the first completion of `prompt`."""
        return self.complete(prompt, params, constraints, **overrides)[0].text

    def stream_deltas(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams | None = None,
        constraints: Sequence[LogitsProcessor] = (),
        cancel: threading.Event | None = None,
        **overrides: Any,
    ) -> Iterator[Delta]:
        """Text deltas of every completion as they become final (see `Decoder.stream`)."""
        params = with_overrides(params, overrides)
        yield from self.decode_deltas(prompts, params, constraints, cancel, [])

    def decode_deltas(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams,
        constraints: Sequence[LogitsProcessor],
        cancel: threading.Event | None,
        completions: list[Completion],
    ) -> Iterator[Delta]:
        """The one decoding loop behind `complete`, `stream_deltas` and the server: the text
        deltas of every completion as they are made, then the completions themselves put in
        `completions`, in order."""
        done: list[Completion] = []
        for batch in self._batches(prompts, params):
            with self.lock:
                source = self.logits_source(batch.params)
                run = Decoder(source, self.tokenizer, self.overflow, self.copy_index(batch.params))
                job = run.start(batch.prompts, batch.params, constraints, cancel)
                for delta in run.drive(job):
                    delta.index = batch.index_of(delta.index)
                    yield delta
            for c in job.completions():
                c.index = batch.index_of(c.index)
                c.prompt_index += batch.first_prompt
                done.append(c)
            if cancel is not None and cancel.is_set():
                break
        completions.extend(sorted(done, key=lambda c: c.index))

    def stream(
        self,
        prompt: str,
        params: SamplingParams | None = None,
        constraints: Sequence[LogitsProcessor] = (),
        cancel: threading.Event | None = None,
        **overrides: Any,
    ) -> Iterator[str]:
        """Text pieces of the first completion of `prompt` as they are written."""
        for delta in self.stream_deltas(prompt, params, constraints, cancel, **overrides):
            if delta.index == 0 and delta.text:
                yield delta.text

    def _batches(self, prompts: str | Sequence[str], params: SamplingParams) -> Iterator[_Batch]:
        """The request cut into pieces the backend decodes at once. A backend of one row at a
        time gets one (prompt, sample) per piece; sample s of a seeded request uses seed + s,
        so results do not depend on how the request was cut."""
        prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompt_list:
            raise EngineError("no prompt given")
        if self.max_batch is None or len(prompt_list) * params.n <= self.max_batch:
            yield _Batch(prompt_list, params)
            return
        for p, prompt in enumerate(prompt_list):
            for s in range(params.n):
                # Seeds wrap within the 64 bits a generator takes.
                seed = None if params.seed is None else (params.seed + s) % (MAX_SEED + 1)
                one = params.model_copy(update={"n": 1, "seed": seed})
                yield _Batch([prompt], one, first_prompt=p, index=p * params.n + s)


@dataclass
class _Batch:
    """Part of a request: its prompts, and where its completions sit in the whole."""

    prompts: list[str]
    params: SamplingParams
    first_prompt: int = 0
    index: int | None = None  # the one completion's index, when the part is a single row

    def index_of(self, local: int) -> int:
        return local if self.index is None else self.index
