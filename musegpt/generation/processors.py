"""Logits processors: small pieces with one job each, applied in a fixed order.

Each takes the token ids so far and the next-token scores (B, vocab) and returns new scores.
The pipeline order (see `build_pipeline`) is:

1. hard rules on raw logits: logit bias, repetition / presence / frequency penalties, DRY,
   no-repeat n-grams, minimum length, banned token ids (control/special tokens), then any
   caller constraints (poetic form, music grammar) — a constraint sees penalised scores and
   may only remove tokens — then the tokens a backtrack took back at this position (banned
   phrases), so truncation below chooses among what is still allowed;
2. temperature (with dynamic temperature: last instead, as llama.cpp does);
3. truncation: top-n-sigma, top-k, top-p, typical-p, min-p, XTC (each on the tempered
   distribution) — or, with Mirostat, Mirostat alone;
4. the sampler draws from what is left (greedy when temperature is 0); Mirostat then
   learns from the token drawn.

llama.cpp's samplers (DRY, XTC, Mirostat, dynamic temperature, top-n-sigma) live in
samplers.py; docs/sampling.md sets this order beside llama.cpp's.

Where Hugging Face `transformers` has the same processor, ours gives the same scores on the
same logits (tests/test_processors.py checks this).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from musegpt.generation.params import SamplingParams
from musegpt.tokenizer.base import Tokenizer

NEG_INF = float("-inf")


@dataclass
class DecodeState:
    """What processors may look at: each row's token ids (prompt then generated)."""

    sequences: list[list[int]]
    prompt_lengths: list[int]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # Per row, tokens that may not be chosen at this step (a backtrack took them back here).
    blocked: Sequence[Collection[int]] = field(default_factory=list)
    # Per row, its number in the request: it stays with the row when others leave the
    # batch, so a processor with per-row state (Mirostat) finds it. Default: the position.
    keys: Sequence[int] = field(default_factory=list)

    def generated(self, row: int) -> list[int]:
        return self.sequences[row][self.prompt_lengths[row] :]

    def key(self, row: int) -> int:
        return self.keys[row] if self.keys else row

    @classmethod
    def from_ids(cls, input_ids: torch.Tensor, prompt_length: int = 0) -> DecodeState:
        rows = input_ids.tolist()
        return cls(rows, [prompt_length] * len(rows), input_ids.device)


class LogitsProcessor(Protocol):
    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor: ...


class InPlace(Protocol):
    """A processor that can also change scores in place (`apply_`), with the same
    arithmetic as its `__call__`, which returns a copy of its own: `apply_pipeline` copies
    the vocabulary's scores once and lets later such steps work on that copy (each copy of
    Gemma's 262k scores cost 0.1-0.3 ms of every decoded token)."""

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor: ...

    def apply_(self, state: DecodeState, scores: torch.Tensor) -> None: ...


@runtime_checkable
class ChoiceObserver(Protocol):
    """A processor that learns from the token each row chose (Mirostat's running target)."""

    def chosen(self, state: DecodeState, scores: torch.Tensor, tokens: torch.Tensor) -> None:
        """`scores`: what the tokens were drawn from; `tokens`: one per row, -1 for none."""


def check_token_ids(ids: Collection[int], vocab_size: int, what: str) -> None:
    """ValueError naming (a few of) the ids in `ids` outside [0, vocab_size), and the range."""
    outside = sorted(t for t in ids if not 0 <= t < vocab_size)
    if not outside:
        return
    shown = ", ".join(str(t) for t in outside[:3])
    more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
    raise ValueError(
        f"{what} names token ids outside the vocabulary ({shown}{more}); "
        f"ids lie in [0, {vocab_size})"
    )


class LogitBias:
    """Add a fixed bias to chosen token ids (OpenAI `logit_bias`)."""

    def __init__(self, bias: dict[int, float], vocab_size: int) -> None:
        check_token_ids(bias.keys(), vocab_size, "logit_bias")
        self.tokens = torch.tensor(list(bias), dtype=torch.long)
        self.values = torch.tensor(list(bias.values()), dtype=torch.float32)

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        scores[:, self.tokens.to(scores.device)] += self.values.to(scores)
        return scores


class RepetitionPenalty:
    """CTRL's penalty on every token among the last `last_n` of the sequence (-1: all of
    it), prompt included: positive scores are divided by the penalty, negative ones
    multiplied."""

    def __init__(self, penalty: float, last_n: int = -1) -> None:
        self.penalty = penalty
        self.last_n = last_n

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        for row, seq in enumerate(state.sequences):
            if self.last_n > 0:
                seq = seq[-self.last_n :]
            if not seq:
                continue
            seen = torch.tensor(sorted(set(seq)), device=scores.device)
            picked = scores[row, seen]
            scores[row, seen] = torch.where(
                picked < 0, picked * self.penalty, picked / self.penalty
            )
        return scores


class PresenceFrequencyPenalty:
    """OpenAI's penalties on generated tokens: minus `presence` once a token has appeared,
    minus `frequency` for each time it has."""

    def __init__(self, presence: float, frequency: float) -> None:
        self.presence = presence
        self.frequency = frequency

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        self.apply_(state, scores)
        return scores

    def apply_(self, state: DecodeState, scores: torch.Tensor) -> None:
        for row in range(scores.shape[0]):
            generated = state.generated(row)
            if not generated:
                continue
            # Only the tokens seen are touched: cheap even for a 262k-token vocabulary
            # (counted in Python: a few hundred ids cost less than torch.unique's set-up).
            counts = Counter(generated)
            seen = torch.tensor(list(counts), device=scores.device)
            times = torch.tensor(list(counts.values()), dtype=scores.dtype, device=scores.device)
            scores[row].index_add_(0, seen, -(self.frequency * times + self.presence))


class NoRepeatNGram:
    """Ban any token that would repeat an n-gram already in the sequence."""

    def __init__(self, size: int) -> None:
        self.size = size

    def banned_tokens(self, seq: Sequence[int]) -> set[int]:
        n = self.size
        if len(seq) + 1 < n:
            return set()
        prefix = tuple(seq[len(seq) - n + 1 :]) if n > 1 else ()
        return {
            seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i : i + n - 1]) == prefix
        }

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        for row, seq in enumerate(state.sequences):
            banned = self.banned_tokens(seq)
            if banned:
                scores[row, list(banned)] = NEG_INF
        return scores


class MinNewTokens:
    """Forbid the end-of-text token(s) until `minimum` tokens have been generated."""

    def __init__(self, minimum: int, eos_ids: int | Collection[int]) -> None:
        self.minimum = minimum
        self.eos_index = torch.tensor(sorted([eos_ids] if isinstance(eos_ids, int) else eos_ids))

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        lengths = zip(state.sequences, state.prompt_lengths, strict=True)
        short = [r for r, (seq, prompt) in enumerate(lengths) if len(seq) - prompt < self.minimum]
        if not short:
            return scores
        eos = self.eos_index.to(scores.device)
        if len(short) == scores.shape[0]:  # the usual case, in one op
            return scores.index_fill(-1, eos, NEG_INF)
        scores = scores.clone()
        scores[torch.tensor(short, device=scores.device).view(-1, 1), eos] = NEG_INF
        return scores


class BanTokens:
    """Token ids that are never chosen (control and special tokens: they stand for no text)."""

    def __init__(self, token_ids: Collection[int]) -> None:
        self.index = torch.tensor(sorted(token_ids), dtype=torch.long)

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        return scores.index_fill(-1, self.index.to(scores.device), NEG_INF)

    def apply_(self, state: DecodeState, scores: torch.Tensor) -> None:
        scores.index_fill_(-1, self.index.to(scores.device), NEG_INF)


class BanInText:
    """Changes no score: a rule the decoder checks on each row's text after every token,
    taking back from where it says a banned stretch begins, as it does for `banned_regex`;
    for rules a fixed pattern cannot say (one about the text's own earlier sentences)."""

    def banned_at(self, text: str, shown: int) -> int | None:
        """Where a banned stretch of `text` begins, among those ending after the first
        `shown` characters (already streamed, never taken back); None when there is none."""
        raise NotImplementedError

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        return scores


class WatchText:
    """Changes no score: every `every` tokens it hands each row's text so far to `watch`.
    The text is all that was decoded, with what the stream still holds back (up to
    `REGEX_WINDOW` characters while banned patterns may take it back), so a caller that
    stops a decode on what it reads (a loop, a stalled draft) stops it where it happens:
    reading the stream, it stopped a hundred tokens later (a Chinese story decoded 840 of
    its 2,200 chapter tokens that way)."""

    def __init__(self, tokenizer: Tokenizer, watch: Callable[[str], None], every: int = 4) -> None:
        self.tokenizer, self.watch, self.every = tokenizer, watch, every

    def look(self, state: DecodeState) -> None:
        for row in range(len(state.sequences)):
            generated = state.generated(row)
            if generated and len(generated) % self.every == 0:
                self.watch(self.tokenizer.decode(generated))

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        self.look(state)
        return scores


class BlockTakenBack:
    """The tokens a backtrack took back at this position (`DecodeState.blocked`), per row:
    applied before truncation, so top-k and the like choose among tokens still allowed."""

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        if not any(state.blocked):
            return scores
        scores = scores.clone()
        for row, blocked in enumerate(state.blocked):
            if blocked:
                scores[row, list(blocked)] = NEG_INF
        return scores


class Temperature:
    def __init__(self, temperature: float) -> None:
        if temperature <= 0:
            raise ValueError("temperature must be positive here; 0 means greedy decoding")
        self.temperature = temperature

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


class TopK:
    """Keep the k highest scores (ties with the k-th are kept)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]
        return scores.masked_fill(scores < kth, NEG_INF)


def _keep_at_least_one(remove_sorted: torch.Tensor) -> torch.Tensor:
    """With tokens sorted best first, never remove the best one."""
    remove_sorted[..., 0] = False
    return remove_sorted


class TopP:
    """Nucleus sampling: the smallest set of best tokens whose probability reaches p."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(dim=-1)
        vocab = scores.shape[-1]
        # The nucleus is usually a few hundred tokens: look at the best k, growing k until
        # their mass reaches p, instead of sorting a vocabulary of up to 262k every step.
        k = min(256, vocab)
        while True:
            best, order = torch.topk(probs, k, dim=-1)
            if k == vocab or bool((best.sum(dim=-1) >= self.p).all()):
                break
            k = min(k * 4, vocab)
        # Drop a token when the better ones before it already reach p.
        keep = ~_keep_at_least_one((best.cumsum(dim=-1) - best) >= self.p)
        kept = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, keep)
        return scores.masked_fill(~kept, NEG_INF)


class MinP:
    """Drop tokens whose probability is below `p` times the best token's."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(dim=-1)
        threshold = self.p * probs.max(dim=-1, keepdim=True).values
        return scores.masked_fill(probs < threshold, NEG_INF)


class TypicalP:
    """Locally typical sampling (Meister et al. 2022): keep the tokens whose information is
    closest to the distribution's entropy, until their probability reaches p."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        log_probs = scores.log_softmax(dim=-1)
        probs = log_probs.exp()
        entropy = -(log_probs * probs).nansum(dim=-1, keepdim=True)
        surprise_gap = (-log_probs - entropy).abs()
        sorted_gap, order = torch.sort(surprise_gap, dim=-1)
        cumulative = probs.gather(-1, order).cumsum(dim=-1)
        last = (cumulative < self.p).sum(dim=-1, keepdim=True).clamp(max=scores.shape[-1] - 1)
        remove = _keep_at_least_one(sorted_gap > sorted_gap.gather(-1, last))
        return scores.masked_fill(remove.scatter(-1, order, remove), NEG_INF)


def build_pipeline(
    params: SamplingParams,
    vocab_size: int,
    eos_id: int | Collection[int] | None,
    constraints: Sequence[LogitsProcessor] = (),
    banned_ids: Collection[int] = (),
    tokenizer: Tokenizer | None = None,
) -> list[LogitsProcessor]:
    """The processors `params` asks for, in the documented order; `banned_ids` are never
    chosen (the decoder passes the model's special tokens unless `allow_special_tokens`).
    DRY's sequence breakers are found in `tokenizer`'s vocabulary."""
    from musegpt.generation import samplers  # it builds on this module

    steps: list[LogitsProcessor] = []
    if params.logit_bias:
        steps.append(LogitBias(params.logit_bias, vocab_size))
    if params.repetition_penalty != 1.0 and params.repeat_last_n != 0:
        steps.append(RepetitionPenalty(params.repetition_penalty, params.repeat_last_n))
    if params.presence_penalty or params.frequency_penalty:
        steps.append(PresenceFrequencyPenalty(params.presence_penalty, params.frequency_penalty))
    if params.dry_multiplier > 0 and params.dry_penalty_last_n != 0:
        steps.append(_dry(params, tokenizer))
    if params.no_repeat_ngram_size:
        steps.append(NoRepeatNGram(params.no_repeat_ngram_size))
    if params.min_new_tokens and eos_id is not None:
        steps.append(MinNewTokens(params.min_new_tokens, eos_id))
    if banned_ids:
        steps.append(BanTokens(banned_ids))
    steps.extend(constraints)
    steps.append(BlockTakenBack())
    if params.greedy:
        return steps  # truncation cannot change the argmax
    dynamic = params.dynatemp_range > 0 and not params.mirostat
    if params.temperature != 1.0 and not dynamic:
        steps.append(Temperature(params.temperature))
    if params.mirostat:  # it replaces truncation, as in llama.cpp
        steps.append(samplers.Mirostat(params.mirostat, params.mirostat_tau, params.mirostat_eta))
        return steps
    if params.top_n_sigma > 0:
        steps.append(samplers.TopNSigma(params.top_n_sigma))
    if params.top_k:
        steps.append(TopK(params.top_k))
    if params.top_p < 1.0:
        steps.append(TopP(params.top_p))
    if params.typical_p < 1.0:
        steps.append(TypicalP(params.typical_p))
    if params.min_p > 0.0:
        steps.append(MinP(params.min_p))
    if params.xtc_probability > 0 and params.xtc_threshold <= 0.5:
        steps.append(samplers.XTC(params.xtc_probability, params.xtc_threshold, params.seed))
    if dynamic:
        steps.append(
            samplers.DynamicTemperature(
                params.temperature, params.dynatemp_range, params.dynatemp_exponent
            )
        )
    return steps


def _dry(params: SamplingParams, tokenizer: Tokenizer | None) -> LogitsProcessor:
    from musegpt.generation.samplers import DRY, SequenceBreakers, sequence_breakers

    if params.dry_sequence_breakers and tokenizer is None:
        raise ValueError("DRY's sequence breakers need the model's tokenizer")
    breakers = (
        sequence_breakers(tokenizer, params.dry_sequence_breakers)
        if tokenizer is not None and params.dry_sequence_breakers
        else SequenceBreakers()
    )
    return DRY(
        params.dry_multiplier,
        params.dry_base,
        params.dry_allowed_length,
        params.dry_penalty_last_n,
        breakers,
    )


def apply_pipeline(
    steps: Sequence[LogitsProcessor], state: DecodeState, scores: torch.Tensor
) -> torch.Tensor:
    owned = False  # whether `scores` is a copy made here, which steps may change in place
    for step in steps:
        in_place = getattr(step, "apply_", None)
        if owned and in_place is not None:
            in_place(state, scores)
            continue
        given, scores = scores, step(state, scores)
        if scores is not given:  # a new tensor: the pipeline's own if the step is `InPlace`
            owned = in_place is not None
    return scores


def observe_choice(
    steps: Sequence[LogitsProcessor], state: DecodeState, scores: torch.Tensor, tokens: torch.Tensor
) -> None:
    """Tell the processors that learn from each choice (Mirostat) which tokens were drawn
    from `scores` (-1: the row had none)."""
    for step in steps:
        # What isinstance(step, ChoiceObserver) checks, without a runtime protocol's cost
        # (about 30 µs a processor, every step).
        chosen = getattr(step, "chosen", None)
        if callable(chosen):
            chosen(state, scores, tokens)
