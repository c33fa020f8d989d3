"""The decoding loop: prompts in, completions (or a stream of text deltas) out.

One loop serves every sampling parameter. It asks for next-token logits, runs the logits
processors, draws tokens, and keeps per-row bookkeeping: stop strings, banned phrases with
backtracking, UTF-8-safe text, log-probabilities, cancellation. Its text deltas (`Delta`)
carry the tokens each completes, with their exact bytes and log-probabilities, so callers
(the server's streams) need nothing but this public API.

Control and special tokens (`Tokenizer.special_ids`, such as Gemma's `<start_of_image>`)
are never chosen unless `SamplingParams.allow_special_tokens`; the model's stop tokens stay
allowed and end the text. A row whose every token is ruled out (constraints, banned
phrases, banned ids together) first takes back its newest token not yet streamed and
tries another; when nothing can be taken back it finishes with `no_allowed_token` and a
`finish_message` saying why: a made-up token is never emitted.

The loop is a generator that yields a `LogitsRequest` whenever it needs logits and is sent
them back (`Decoder.start` gives it as a `DecodeJob`). `generate` and `stream` answer from
the decoder's `LogitsSource` (a MuseGPT model here; other backends implement the same
methods); a continuous-batching scheduler answers many jobs with one forward pass, all on
its own thread, so no request needs a thread of its own.

Context policy ("slide", the default): a prompt longer than the context window keeps its
most recent `context - 1` tokens; when generation fills the window, each row keeps the most
recent half of it and the cache is rebuilt from that, so generation never stops for lack
of room. With "error", an over-long prompt raises ValueError instead.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch

from musegpt.generation.candidates import ON_CANDIDATES, on_candidates
from musegpt.generation.copy_guard import copy_guards
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import (
    NEG_INF,
    BanInText,
    DecodeState,
    LogitsProcessor,
    MinP,
    Temperature,
    TopK,
    TopP,
    TypicalP,
    apply_pipeline,
    build_pipeline,
    observe_choice,
)
from musegpt.generation.samplers import XTC, DynamicTemperature
from musegpt.model.gpt import GPT, GPTOutput
from musegpt.model.kv_cache import KVCache
from musegpt.originality.index import CopyIndex
from musegpt.tokenizer.base import Tokenizer

FinishReason = Literal["stop", "length", "cancelled", "no_allowed_token"]
OverflowPolicy = Literal["slide", "error"]
REGEX_WINDOW = 128  # characters a banned pattern may span; the stream holds this much back
COPY_HOLD = 16  # characters held back under `max_copy`, so a dead end can take back
MAX_BACKTRACKS = 1000  # per row: a row that has to take back more often than this ends
NO_TOKEN_LEFT = -1  # what `_choose` gives a row with no allowed token
DEAD_END = (
    "every token was ruled out here by the request's rules together (constraints, banned "
    "phrases, no-repeat n-grams, the minimum length, special tokens), and the tokens before "
    "were already sent, so none could be taken back"
)
GAVE_UP = (
    "every continuation tried was ruled out by the request's rules (banned phrases, "
    f"constraints; gave up after {MAX_BACKTRACKS} attempts); the text ends before the last"
)


class LogitsSource(Protocol):
    """What the decoder needs from a model: next-token logits for a batch of rows."""

    @property
    def context_length(self) -> int: ...

    def prefill(self, windows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Start afresh from these token windows; return next-token logits (B, vocab)."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row (B,); return next-token logits (B, vocab)."""

    def keep_rows(self, rows: Sequence[int]) -> None:
        """Drop every row not listed (finished sequences leave the batch)."""

    def room_left(self) -> int:
        """Tokens that can still be appended before the window is full."""


class GPTLogitsSource:
    """A MuseGPT model with a KV cache; rows of different lengths are left-padded.

    The forward passes run in `torch.inference_mode`, not just `no_grad`: without autograd's
    view and version bookkeeping on the ~40 small tensor ops of each layer, a decode step of
    a 10M model is 15-25% faster on a CPU (measured). The logits are inference tensors: the
    processors never modify their input in place (they clone), so that is safe."""

    def __init__(self, model: GPT) -> None:
        self.model = model
        self.device = model.wte.weight.device
        self.cache: KVCache | None = None
        self.padding = torch.zeros(0, dtype=torch.long)
        self.padded = False  # whether any row has left padding (checked once, not per step)

    @property
    def context_length(self) -> int:
        return self.model.config.block_size

    @torch.inference_mode()
    def prefill(self, windows: Sequence[Sequence[int]]) -> torch.Tensor:
        longest = max(len(w) for w in windows)
        batch = torch.zeros(len(windows), longest, dtype=torch.long)
        for row, window in enumerate(windows):
            batch[row, longest - len(window) :] = torch.tensor(list(window), dtype=torch.long)
        pads = [longest - len(w) for w in windows]
        self.padding = torch.tensor(pads, device=self.device)
        self.padded = any(pads)
        self.cache = self.model.new_cache(len(windows))
        padding = self.padding if self.padded else None
        out: GPTOutput = self.model(
            batch.to(self.device), cache=self.cache, last_only=True, left_padding=padding
        )
        return out.logits[:, -1, :]

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        padding = self.padding if self.padded else None
        out: GPTOutput = self.model(
            tokens.view(-1, 1).to(self.device),
            cache=self.cache,
            last_only=True,
            left_padding=padding,
        )
        return out.logits[:, -1, :]

    @torch.inference_mode()
    def keep_rows(self, rows: Sequence[int]) -> None:
        index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        assert self.cache is not None
        self.cache.select(index)
        self.padding = self.padding.index_select(0, index)
        self.padded = bool(self.padding.any())

    def room_left(self) -> int:
        return self.context_length - (self.cache.length if self.cache is not None else 0)


@dataclass
class TopLogprob:
    """One of the likeliest alternatives at a step."""

    token: str  # its text (a piece of a character shows as U+FFFD; `bytes` is exact)
    token_id: int
    logprob: float
    bytes: bytes


@dataclass
class TokenLogprob:
    token: str  # the token's text (a piece of a character shows as U+FFFD)
    token_id: int
    logprob: float
    top: list[TopLogprob]  # the likeliest alternatives, best first
    bytes: bytes = b""  # the token's exact bytes (part of a UTF-8 character, maybe)
    text_offset: int = 0  # where its text starts in the generated text (its character's start)


@dataclass
class Completion:
    index: int  # position in the request: prompt_index * n + sample_index
    prompt_index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_tokens: int
    logprobs: list[TokenLogprob] | None = None
    finish_message: str | None = None  # why, when the reason needs explaining


@dataclass
class Delta:
    """A piece of streamed text for one completion; `finish_reason` is set on its last.

    `token_ids` are the tokens whose text this delta completes (a token that holds part of
    a character comes with the delta holding that character), `token_bytes` their exact
    bytes, and `logprobs` their log-probabilities when the request asked for them."""

    index: int
    text: str
    finish_reason: FinishReason | None = None
    token_ids: list[int] = field(default_factory=list)
    token_bytes: list[bytes] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_message: str | None = None


@dataclass
class LogitsRequest:
    """What a decode waits for: next-token logits (rows, vocab) after prefilling `windows`
    afresh, or after appending `tokens` (one per row) to what is cached."""

    op: Literal["prefill", "step"]
    windows: list[list[int]] = field(default_factory=list)
    tokens: torch.Tensor | None = None


# Yields text deltas and requests for logits; is sent the logits for each request.
DecodeEvents = Generator["Delta | LogitsRequest", "torch.Tensor | None", None]


@dataclass
class DecodeJob:
    """A decode driven from outside: send it logits for each `LogitsRequest` it yields;
    once it is exhausted, `completions()` has the results."""

    events: DecodeEvents
    rows: list[_Row]
    params: SamplingParams
    decoder: Decoder

    def completions(self) -> list[Completion]:
        return [self.decoder._completion(row, self.params) for row in self.rows]


@dataclass
class _Row:
    index: int
    prompt_index: int
    prompt_ids: list[int]
    ids: list[int]  # prompt then generated: what processors see
    window: list[int]  # what the model's cache holds (plus the newest token)
    token_bytes: list[bytes] = field(default_factory=list)
    char_ends: list[int] = field(default_factory=list)  # text length after each token
    text: str = ""  # complete characters of the generated bytes
    pending: bytes = b""  # an incomplete UTF-8 sequence at the end
    emitted: int = 0  # characters already streamed
    banned_at: dict[int, set[int]] = field(default_factory=dict)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    backtracks: int = 0
    finish: FinishReason | None = None
    finish_message: str | None = None
    stop_at: int | None = None  # text is cut here when a stop string was found
    sent: int = 0  # generated tokens already handed out with a delta (never taken back)

    @property
    def generated(self) -> list[int]:
        return self.ids[len(self.prompt_ids) :]

    @property
    def n_generated(self) -> int:
        return len(self.ids) - len(self.prompt_ids)


def _complete_utf8(data: bytes) -> tuple[str, bytes]:
    """Decode the longest prefix of `data` that ends on a character boundary."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            return data[:cut].decode("utf-8"), data[cut:]
        except UnicodeDecodeError as err:
            if err.reason != "unexpected end of data" and cut == len(data):
                # Invalid bytes (a model can emit any byte): show replacement characters.
                return data.decode("utf-8", errors="replace"), b""
    return data.decode("utf-8", errors="replace"), b""


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of `probs` (B, vocab), drawn with those probabilities.

    Inverse-CDF sampling: one uniform number per row, located in the row's cumulative sum.
    `torch.multinomial` draws one exponential number per vocabulary entry instead, which on a
    CPU costs ~0.2 ms per row for an 8,192-token vocabulary (more than the rest of a step's
    sampling together). Right after a forward pass every small tensor op costs several
    times its warm price (cold caches), so this takes as few ops as it can: five, plus a
    check. A token of probability 0 is never drawn.
    """
    cdf = probs.cumsum(dim=-1, dtype=torch.float64)
    device = generator.device if generator is not None else probs.device
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=torch.float64, device=device)
    point = u.to(probs.device).mul_(cdf[:, -1:])
    tokens = torch.searchsorted(cdf, point, right=True).squeeze(-1)
    if int(tokens.max()) < probs.shape[-1]:
        return tokens
    # Past the end: a row summing to 0 or NaN, or u * total rounded up to the total.
    total = cdf[:, -1]
    if not bool((total > 0).all()):  # NaN too
        raise ValueError("cannot sample: a row has no token with a positive probability")
    # The point is the total itself: the last token of positive probability is the one.
    last_positive = probs.shape[-1] - 1 - (probs.flip(-1) > 0).int().argmax(dim=-1)
    return torch.minimum(tokens, last_positive)


# Processors that look only at the scores' values, not at which token has which: after
# top-k they may run on the k survivors alone (`shortlist_scores`).
VALUE_ONLY = (Temperature, TopP, TypicalP, MinP, XTC, DynamicTemperature)


def shortlist_scores(
    pipeline: Sequence[LogitsProcessor], state: DecodeState, raw: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The pipeline's scores, and which token ids they are for (None: the whole vocabulary,
    in order).

    When top-k is followed only by value-only processors, the steps after it run on the k
    survivors rather than the whole vocabulary (262,144 tokens on Gemma), which gives the
    same distribution: top-k keeps exactly those k (unless a score outside them ties the
    k-th, when the whole vocabulary is used). The survivors are listed by token id, so
    that a draw walks them in the same order as it walks the whole vocabulary. A
    temperature just before top-k is applied to the survivors alone, once it is sure that
    dividing by it ties no one outside them with the k-th (it keeps the order)."""
    cut = next((i for i, step in enumerate(pipeline) if isinstance(step, TopK)), None)
    tail = pipeline[cut + 1 :] if cut is not None else ()
    if cut is None or not all(isinstance(step, VALUE_ONLY) for step in tail):
        return apply_pipeline(pipeline, state, raw), None
    top_k = pipeline[cut]
    assert isinstance(top_k, TopK)
    before = pipeline[cut - 1] if cut else None
    temperature = before if isinstance(before, Temperature) else None
    head = pipeline[: cut - 1] if temperature is not None else pipeline[:cut]
    k = min(top_k.k, raw.shape[-1])
    early = _candidates_first(head, temperature, [top_k, *tail], state, raw, k)
    if early is not None:
        return early
    scores = apply_pipeline(head, state, raw)
    if temperature is not None and k < scores.shape[-1]:
        found = _best_k_tempered(scores, k, temperature.temperature)
        if found is None:
            return apply_pipeline(pipeline[cut - 1 :], state, scores), None
        values, ids = found
        return apply_pipeline([temperature, *tail], state, values), ids
    if temperature is not None:
        scores = temperature(state, scores)
    found = best_k(scores, k)
    if found is None:
        return apply_pipeline(pipeline[cut:], state, scores), None
    values, ids = found
    return apply_pipeline(tail, state, values), ids


def _candidates_first(
    head: Sequence[LogitsProcessor],
    temperature: Temperature | None,
    rest: Sequence[LogitsProcessor],
    state: DecodeState,
    raw: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Top-k before the processors ahead of it, where that is exact (see `candidates`):
    the best max(2k, k + 64) raw scores, the processors on them alone, and a check that
    the k-th best after them still beats every raw score left out (after the temperature,
    too). None when it cannot be done that way: the whole vocabulary is then used."""
    width = max(2 * k, k + 64)
    if width >= raw.shape[-1] or not all(isinstance(step, ON_CANDIDATES) for step in head):
        return None
    found = best_k(raw, width)
    if found is None:
        return None
    values, ids = found
    floor = values.amin(dim=-1, keepdim=True)  # every token left out scores below this
    for step in head:
        lowered = on_candidates(step, state, values, ids)
        if lowered is None:
            return None
        values = lowered
    kth = values.topk(k, dim=-1).values[:, -1:]
    if temperature is not None:
        apart = kth / temperature.temperature > floor / temperature.temperature
    else:
        apart = kth >= floor
    if not bool((apart | (floor == NEG_INF)).all()):
        return None
    steps = [temperature, *rest] if temperature is not None else list(rest)
    return apply_pipeline(steps, state, values), ids


def _best_k_tempered(
    scores: torch.Tensor, k: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`best_k` of `scores / temperature`, without dividing the whole vocabulary: the best
    k + 1 untempered, when the (k+1)-th stays strictly below the k-th once divided (so no
    one outside ties the k-th), less the (k+1)-th. None when that cannot be assured."""
    found = best_k(scores, k + 1)
    if found is None:
        return None
    values, ids = found
    if values.device.type == "cpu" and bool((values.amin(dim=-1) > NEG_INF).all()):
        return _drop_least(values, ids, temperature)
    return _drop_kth_plus_one(values, ids, k, temperature)


def _drop_kth_plus_one(
    values: torch.Tensor, ids: torch.Tensor, k: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`_best_k_tempered`'s last step in torch, for any device and scores (-inf included):
    the k + 1 `values` less the (k+1)-th, when it stays strictly below the k-th once divided."""
    order = values.argsort(dim=-1, descending=True)
    kth = values.gather(-1, order[:, k - 1 : k])
    next_best = values.gather(-1, order[:, k:])
    apart = (kth / temperature > next_best / temperature) | (kth == NEG_INF)
    if not bool(apart.all()):
        return None
    keep = torch.ones_like(values, dtype=torch.bool).scatter(-1, order[:, k:], False)
    rows = values.shape[0]
    return values[keep].view(rows, k), ids[keep].view(rows, k)


def _drop_least(
    values: torch.Tensor, ids: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`_best_k_tempered`'s last step for finite scores on a CPU, in numpy (a dozen small
    torch ops cost ~0.2 ms a decoded token): each row less its least score, when that
    stays strictly below every other once divided (then it is unique, and the one the
    sort drops); the division itself is torch's, as in the general case."""
    rows = values.numpy()
    least = rows.argmin(axis=-1)
    picked = np.arange(rows.shape[0])
    is_least = np.arange(rows.shape[-1]) == least[:, None]
    second = np.where(is_least, np.inf, rows).min(axis=-1)  # the k-th best: least of the rest
    pair = torch.from_numpy(np.stack([second, rows[picked, least]]).astype(np.float32))
    kth, next_best = pair / temperature
    if not bool((kth > next_best).all()):
        return None
    keep = np.ones(rows.shape, dtype=bool)
    keep[picked, least] = False
    k = rows.shape[-1] - 1
    return (
        torch.from_numpy(rows[keep].reshape(-1, k)),
        torch.from_numpy(ids.numpy()[keep].reshape(-1, k)),
    )


BLOCK = 64  # best_k reads the vocabulary in blocks of this many scores


def best_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The k best scores of each row (B, vocab) and their token ids, listed by id; None when
    a score outside them ties the k-th (top-k then keeps more than k).

    On a CPU this reads the vocabulary once, as groups of 64 scores (token i in group
    i mod vocab/64, so the maxima are one vectorised pass): each of the best k scores lies
    in one of the k groups with the highest maxima (were it elsewhere, k groups would each
    hold a better score), so only those k * 64 scores are searched (numpy here: torch's
    reductions over one long row run several times slower on one thread). Elsewhere, or
    for a vocabulary of fewer than k groups, `torch.topk`."""
    width = scores.shape[-1]
    blocks = width // BLOCK
    if scores.device.type != "cpu" or blocks < k or k < 1 or width % BLOCK:
        return _torch_best_k(scores, k)
    rows = scores.detach().float().numpy()
    best_values, best_ids = [], []
    offsets = np.arange(BLOCK) * blocks
    for row in rows:
        tiles = row.reshape(BLOCK, blocks)
        maxima = tiles.max(axis=0)
        if np.isnan(maxima).any():  # NaN scores: let torch decide
            return _torch_best_k(scores, k)
        chosen = np.argpartition(maxima, blocks - k)[blocks - k :]
        found = tiles[:, chosen].T.ravel()
        top = np.argpartition(found, found.shape[0] - k)[found.shape[0] - k :]
        kth = found[top].min()
        if kth > NEG_INF:  # another score equal to the k-th: top-k would keep it too
            others = np.delete(maxima, chosen)
            if np.count_nonzero(found >= kth) > k or (others >= kth).any():
                return None
        ids = np.sort((chosen[:, None] + offsets).ravel()[top])
        best_ids.append(ids)
        best_values.append(row[ids])
    return torch.from_numpy(np.stack(best_values)), torch.from_numpy(np.stack(best_ids))


def argmax_rows(scores: torch.Tensor) -> torch.Tensor:
    """Each row's best token (the first of equals); numpy on a CPU, where it is ~20x faster
    than torch's argmax over a long row on one thread (measured: 17 against 434 µs for
    262,144 scores)."""
    if scores.device.type != "cpu":
        return scores.argmax(dim=-1)
    return torch.from_numpy(scores.detach().numpy().argmax(axis=-1))


def _torch_best_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`best_k` with `torch.topk`."""
    values, ids = torch.topk(scores, k, dim=-1)
    kth = values[:, -1:]
    tied = ((scores >= kth).sum(dim=-1) > k) & (kth.view(-1) > NEG_INF)
    if bool(tied.any()):
        return None
    ids, order = ids.sort(dim=-1)
    return values.gather(-1, order), ids


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run torch's operations on `count` threads here (None: as they are)."""
    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Decoder:
    """Generates completions for one or several prompts with one set of `SamplingParams`."""

    def __init__(
        self,
        source: LogitsSource,
        tokenizer: Tokenizer,
        overflow: OverflowPolicy = "slide",
        copy_index: CopyIndex | None = None,
    ) -> None:
        self.source = source
        self.copy_index = copy_index  # what `SamplingParams.max_copy` is enforced against
        self.tokenizer = tokenizer
        self.overflow = overflow
        self.stop_ids = tokenizer.stop_ids
        # Special tokens are banned by default; the stop tokens among them end the text.
        self.special_ids = tokenizer.special_ids - self.stop_ids
        # A source whose model runs its own threads (llama.cpp) asks for one torch thread
        # while choosing tokens, so torch's workers never spin on the model's cores.
        self.sampling_threads: int | None = getattr(source, "sampling_threads", None)

    def generate(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams,
        constraints: Sequence[LogitsProcessor] = (),
    ) -> list[Completion]:
        job = self.start(prompts, params, constraints)
        for _ in self.drive(job):
            pass
        return job.completions()

    def stream(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams,
        constraints: Sequence[LogitsProcessor] = (),
        cancel: threading.Event | None = None,
    ) -> Iterator[Delta]:
        """Text deltas as they become final: never half a character, never text a banned
        phrase will take back, never the start of a stop string."""
        yield from self.drive(self.start(prompts, params, constraints, cancel))

    def start(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams,
        constraints: Sequence[LogitsProcessor] = (),
        cancel: threading.Event | None = None,
    ) -> DecodeJob:
        """The decode as a job for someone else to drive (see `DecodeJob`); `keep_rows`,
        `room_left` and `context_length` still come from this decoder's source."""
        rows = self._start_rows(prompts, params)
        return DecodeJob(self._events(rows, params, constraints, cancel), rows, params, self)

    def _events(
        self,
        rows: list[_Row],
        params: SamplingParams,
        constraints: Sequence[LogitsProcessor],
        cancel: threading.Event | None,
    ) -> DecodeEvents:
        if params.echo:
            for row in rows:
                yield Delta(row.index, self.tokenizer.decode(row.prompt_ids))
        yield from self._decode(rows, params, constraints, cancel)

    def drive(self, job: DecodeJob) -> Iterator[Delta]:
        """Run `job` here, answering its requests for logits from `self.source`; its text
        deltas come out as they are made, and `job.completions()` once it is exhausted."""
        events = job.events
        reply: torch.Tensor | None = None
        try:
            while True:
                item = events.send(reply)
                if isinstance(item, LogitsRequest):
                    if item.op == "prefill":
                        reply = self.source.prefill(item.windows)
                    else:
                        assert item.tokens is not None
                        reply = self.source.step(item.tokens)
                else:
                    reply = None
                    yield item
        except StopIteration:
            return
        finally:
            events.close()

    # -- set-up ---------------------------------------------------------------------------

    def _start_rows(self, prompts: str | Sequence[str], params: SamplingParams) -> list[_Row]:
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts:
            raise ValueError("no prompt given")
        limit = self.source.context_length - 1
        rows: list[_Row] = []
        for p, prompt in enumerate(prompts):
            ids = self.tokenizer.encode(prompt) if prompt else [self.tokenizer.eot_id]
            if len(ids) > limit and self.overflow == "error":
                raise ValueError(
                    f"prompt {p} has {len(ids)} tokens; the model's context holds {limit + 1}"
                )
            for s in range(params.n):
                rows.append(_Row(p * params.n + s, p, ids, list(ids), ids[-limit:]))
        return rows

    # -- the loop -------------------------------------------------------------------------

    def _decode(
        self,
        rows: list[_Row],
        params: SamplingParams,
        constraints: Sequence[LogitsProcessor],
        cancel: threading.Event | None,
    ) -> DecodeEvents:
        vocab = self.tokenizer.vocab_size
        special = frozenset() if params.allow_special_tokens else self.special_ids
        text_bans = [c for c in constraints if isinstance(c, BanInText)]
        constraints = [c for c in constraints if not isinstance(c, BanInText)]
        constraints = [*constraints, *copy_guards(self.copy_index, params.max_copy, self.tokenizer)]
        pipeline = build_pipeline(
            params, vocab, self.stop_ids, constraints, special, self.tokenizer
        )
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        banned: list[re.Pattern[str] | BanInText] = [
            re.compile(re.escape(p)) for p in params.banned
        ]
        banned += [re.compile(p) for p in params.banned_regex]
        banned += text_bans
        hold = max([len(s) - 1 for s in params.stop + params.banned] + [0])
        if params.banned_regex or text_bans:
            hold = max(hold, REGEX_WINDOW)
        if params.max_copy is not None:  # room to take back when the guard leaves no token
            hold = max(hold, COPY_HOLD)

        active = list(rows)
        logits = yield LogitsRequest("prefill", [r.window for r in active])
        while active:
            assert logits is not None
            if cancel is not None and cancel.is_set():
                for row in active:
                    row.finish = "cancelled"
                    yield self._flush(row, params)
                return
            with torch_threads(self.sampling_threads):
                tokens = self._choose(active, logits, pipeline, params, generator)
            need_rebuild = False
            for row, token in zip(active, tokens.tolist(), strict=True):
                if self._accept(row, token, params, banned):
                    need_rebuild = True
                if row.finish is None:
                    delta = self._emit(row, hold, params)
                    if delta is not None:
                        yield delta
                else:
                    yield self._flush(row, params)
            still = [i for i, row in enumerate(active) if row.finish is None]
            if not still:
                return
            if len(still) < len(active):
                self.source.keep_rows(still)
                tokens = tokens[still]
                active = [active[i] for i in still]
            if not need_rebuild and self.source.room_left() < 1:
                keep = max(self.source.context_length // 2, 1)
                for row in active:
                    row.window = row.window[-keep:]
                need_rebuild = True
            if need_rebuild:
                logits = yield LogitsRequest("prefill", [r.window for r in active])
            else:
                logits = yield LogitsRequest("step", tokens=tokens)

    def _choose(
        self,
        rows: list[_Row],
        logits: torch.Tensor,
        pipeline: Sequence[LogitsProcessor],
        params: SamplingParams,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """One token per row, or NO_TOKEN_LEFT for a row whose every token is ruled out."""
        # A model's output may be wider than its vocabulary (padding): those are no tokens.
        raw = logits.float()[:, : self.tokenizer.vocab_size]
        blocked = [r.banned_at.get(r.n_generated, ()) for r in rows]
        state = DecodeState(
            [r.ids for r in rows],
            [len(r.prompt_ids) for r in rows],
            blocked=blocked,
            keys=[r.index for r in rows],
        )
        scores, candidates = shortlist_scores(pipeline, state, raw)
        allowed = scores.amax(dim=-1) != NEG_INF  # amax: one fast pass (any() is slow)
        stuck = not bool(allowed.all())
        if stuck:  # give such rows any finite scores to draw from, then take their draw back
            scores = scores.masked_fill(~allowed.view(-1, 1), 0.0)
        if params.greedy:
            tokens = argmax_rows(scores)
        else:
            tokens = draw(torch.softmax(scores, dim=-1), generator)
        if stuck:
            tokens = tokens.masked_fill(~allowed, NO_TOKEN_LEFT)
        observe_choice(pipeline, state, scores, tokens)  # Mirostat learns from the draw
        if candidates is not None:  # positions among the shortlist -> token ids
            chosen = candidates.gather(-1, tokens.clamp(min=0).view(-1, 1)).view(-1)
            tokens = torch.where(tokens >= 0, chosen, tokens)
        if params.logprobs is not None:
            self._record_logprobs(rows, raw, tokens, params.logprobs)
        return tokens

    def _record_logprobs(
        self, rows: list[_Row], raw: torch.Tensor, tokens: torch.Tensor, top: int
    ) -> None:
        """Log-probabilities under the model itself, before any processor reshaped them."""
        logp = torch.log_softmax(raw, dim=-1)
        best = torch.topk(logp, top, dim=-1) if top else None
        for i, row in enumerate(rows):
            token = int(tokens[i])
            if token == NO_TOKEN_LEFT:
                continue
            alternatives: list[TopLogprob] = []
            if best is not None:
                for value, alt in zip(
                    best.values[i].tolist(), best.indices[i].tolist(), strict=True
                ):
                    alt_bytes = self.tokenizer.token_bytes(alt)
                    alternatives.append(TopLogprob(_text_of(alt_bytes), alt, value, alt_bytes))
            data = self.tokenizer.token_bytes(token)
            # A token continuing a character starts where that character does.
            row.logprobs.append(
                TokenLogprob(
                    _text_of(data), token, float(logp[i, token]), alternatives, data, len(row.text)
                )
            )

    def _accept(
        self,
        row: _Row,
        token_id: int,
        params: SamplingParams,
        banned: list[re.Pattern[str] | BanInText],
    ) -> bool:
        """Add the token to the row and settle the row's fate; True when the row backtracked
        (its cache must be rebuilt)."""
        if token_id == NO_TOKEN_LEFT:
            return self._dead_end(row)
        if token_id in self.stop_ids:
            row.finish = "stop"
            if row.logprobs:
                row.logprobs.pop()  # the separator is not part of the text
            return False
        row.ids.append(token_id)
        row.window.append(token_id)
        data = self.tokenizer.token_bytes(token_id)
        row.token_bytes.append(data)
        new_text, row.pending = _complete_utf8(row.pending + data)
        row.text += new_text
        row.char_ends.append(len(row.text))

        if banned and self._backtrack_if_banned(row, banned):
            return True
        if params.stop:
            found = [i for i in (row.text.find(s, row.emitted) for s in params.stop) if i >= 0]
            if found:
                row.stop_at = min(found)
                row.finish = "stop"
                return False
        if row.n_generated >= params.max_new_tokens:
            row.finish = "length"
        return False

    def _dead_end(self, row: _Row) -> bool:
        """No token is allowed: take back the newest token not yet streamed and forbid it
        there (True: rebuild the cache), or, with nothing to take back, finish the row."""
        newest = row.n_generated - 1
        if newest < row.sent:
            row.finish, row.finish_message = "no_allowed_token", DEAD_END
            return False
        self._take_back(row, newest)
        return True

    def _backtrack_if_banned(self, row: _Row, banned: list[re.Pattern[str] | BanInText]) -> bool:
        # A phrase may begin in text already streamed: a take-back can leave less than a
        # phrase's length held back (seen with `max_copy`: "t" streamed, then "he" written).
        since = max(row.emitted - REGEX_WINDOW, 0)
        starts = [
            max(m.start(), row.emitted)
            for p in banned
            if isinstance(p, re.Pattern)
            for m in p.finditer(row.text, since)
            if m.end() > row.emitted
        ]
        for rule in banned:
            if (
                isinstance(rule, BanInText)
                and (at := rule.banned_at(row.text, row.emitted)) is not None
            ):
                starts.append(max(at, row.emitted))
        if not starts:
            return False
        start = min(starts)
        # The token holding the phrase's first character not yet streamed is replaced; when
        # that character's bytes came in several tokens, the first of them (taking back only
        # the one that completed it, the row tried every last byte in turn and gave up on a
        # Chinese name banned after "黎春").
        t = next(i for i, end in enumerate(row.char_ends) if end > start)
        while t > 0 and row.char_ends[t - 1] == (row.char_ends[t - 2] if t > 1 else 0):
            t -= 1
        self._take_back(row, t)
        return True

    def _take_back(self, row: _Row, t: int) -> None:
        """Drop generated tokens from the t-th on, and forbid the t-th's choice there."""
        bad = row.generated[t]
        row.backtracks += 1
        keep_prompt = len(row.prompt_ids)
        drop = row.n_generated - t
        del row.ids[keep_prompt + t :]
        row.window = row.window[: len(row.window) - drop] if drop < len(row.window) else []
        if not row.window:
            row.window = row.ids[-(self.source.context_length - 1) :]
        del row.token_bytes[t:]
        del row.char_ends[t:]
        del row.logprobs[t:]
        row.text, row.pending = _complete_utf8(b"".join(row.token_bytes))
        row.banned_at = {k: v for k, v in row.banned_at.items() if k <= t}
        row.banned_at.setdefault(t, set()).add(bad)
        if row.backtracks > MAX_BACKTRACKS:  # every way forward was ruled out: end here
            row.finish, row.finish_message = "no_allowed_token", GAVE_UP

    # -- text out -------------------------------------------------------------------------

    def _emit(self, row: _Row, hold: int, params: SamplingParams) -> Delta | None:
        """The row's newly final text: up to the last token boundary `hold` characters
        before the end, so a later match can only take back text not yet shown."""
        limit = len(row.text) - hold
        boundary = row.emitted
        for end in reversed(row.char_ends):
            if end <= limit:
                boundary = max(end, row.emitted)
                break
        if boundary <= row.emitted:
            return None
        piece = row.text[row.emitted : boundary]
        row.emitted = boundary
        # Its tokens run to the first whose text reaches the boundary; any after it add no
        # whole character yet (they hold part of the next one) and go with a later delta.
        return self._delta(row, piece, bisect.bisect_left(row.char_ends, boundary) + 1, params)

    def _final_text(self, row: _Row) -> str:
        if row.stop_at is not None:
            return row.text[: row.stop_at]
        return row.text + row.pending.decode("utf-8", errors="replace")

    def _flush(self, row: _Row, params: SamplingParams) -> Delta:
        rest = self._final_text(row)[row.emitted :]
        row.emitted += len(rest)
        return self._delta(row, rest, row.n_generated, params)

    def _delta(self, row: _Row, text: str, upto: int, params: SamplingParams) -> Delta:
        """A delta of `text` with the generated tokens up to `upto` not handed out yet."""
        start, row.sent = row.sent, max(row.sent, upto)
        first = len(row.prompt_ids)
        return Delta(
            row.index,
            text,
            row.finish,
            row.ids[first + start : first + upto],
            row.token_bytes[start:upto],
            row.logprobs[start:upto] if params.logprobs is not None else None,
            row.finish_message,
        )

    def _completion(self, row: _Row, params: SamplingParams) -> Completion:
        text = self._final_text(row)
        if params.echo:
            text = self.tokenizer.decode(row.prompt_ids) + text
        assert row.finish is not None
        return Completion(
            index=row.index,
            prompt_index=row.prompt_index,
            text=text,
            token_ids=row.generated,
            finish_reason=row.finish,
            prompt_tokens=len(row.prompt_ids),
            logprobs=row.logprobs if params.logprobs is not None else None,
            finish_message=row.finish_message,
        )


def _text_of(data: bytes) -> str:
    """A token's bytes as text (a piece of a character shows as U+FFFD)."""
    return data.decode("utf-8", errors="replace")
