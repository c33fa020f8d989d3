"""llama.cpp's samplers as MuseGPT logits processors: DRY, XTC, Mirostat 1 and 2, dynamic
temperature and top-n-sigma, with llama.cpp server's parameter names and defaults.

Each follows llama.cpp's own implementation (`src/llama-sampler.cpp`) step for step, so the
same logits give the same distribution (tests/test_samplers.py runs llama.cpp's samplers
through llama-cpp-python beside these). Where a sampler draws random numbers (XTC, and the
draw Mirostat learns from) the numbers come from torch generators, so the same seed gives
the same text on every backend. `build_pipeline` (processors.py) decides where each runs.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from musegpt.generation.processors import NEG_INF, DecodeState
from musegpt.tokenizer.base import Tokenizer

LN2 = math.log(2.0)
FLOAT_MAX_LOG = 88.7228391  # log of float32's largest value: DRY's exponent stays below it
MAX_BREAKER_BYTES = 40  # llama.cpp truncates a sequence breaker to this many bytes
MAX_BREAKER_TAIL = 20  # and the tokens after a breaker's first token to this many
MIROSTAT_M = 100  # Mirostat 1 estimates the Zipf exponent from this many likeliest tokens
XTC_SEED_SALT = 0x5854435F  # "XTC_": XTC's draws are not the token draws of the same seed


# -- DRY ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceBreakers:
    """DRY's sequence breakers in a vocabulary: for each token that can start one, the
    token sequences that must follow it to complete the breaker (empty: the token alone
    holds a whole breaker)."""

    tails: dict[int, tuple[tuple[int, ...], ...]] = field(default_factory=dict)

    def is_whole_breaker(self, token: int) -> bool:
        return () in self.tails.get(token, ())


_BREAKERS: dict[tuple[int, tuple[str, ...]], tuple[weakref.ref[Tokenizer], SequenceBreakers]] = {}
_BREAKERS_LOCK = threading.Lock()


def sequence_breakers(tokenizer: Tokenizer, breakers: Sequence[str]) -> SequenceBreakers:
    """The breakers' token sequences in `tokenizer`'s vocabulary (cached: scanning a
    262,144-token vocabulary takes a moment). As in llama.cpp, a token breaks a sequence
    when its text contains a breaker, and a token whose text ends with the start of a
    breaker does when the tokens of the breaker's rest follow it."""
    key = (id(tokenizer), tuple(breakers))
    with _BREAKERS_LOCK:
        cached = _BREAKERS.get(key)
    if cached is not None and cached[0]() is tokenizer:
        return cached[1]
    table = _scan_vocabulary(tokenizer, breakers)
    with _BREAKERS_LOCK:
        if len(_BREAKERS) >= 16:  # a few models at a time; drop the oldest
            _BREAKERS.pop(next(iter(_BREAKERS)))
        _BREAKERS[key] = (weakref.ref(tokenizer), table)
    return table


def _scan_vocabulary(tokenizer: Tokenizer, breakers: Sequence[str]) -> SequenceBreakers:
    tails: dict[int, set[tuple[int, ...]]] = {}
    patterns = [b.encode("utf-8")[:MAX_BREAKER_BYTES] for b in breakers if b]
    pieces = tokenizer.all_token_bytes()
    for pattern in patterns:
        for token, piece in enumerate(pieces):
            if not piece:
                continue
            if pattern in piece:
                tails.setdefault(token, set()).add(())
                continue
            # The piece ends with the breaker's first `cut` bytes: the rest must follow.
            for cut in range(min(len(pattern) - 1, len(piece)), 0, -1):
                if piece.endswith(pattern[:cut]):
                    rest = _encode_rest(tokenizer, pattern[cut:])
                    if rest is not None:
                        tails.setdefault(token, set()).add(rest)
    return SequenceBreakers({t: tuple(sorted(s)) for t, s in tails.items()})


def _encode_rest(tokenizer: Tokenizer, rest: bytes) -> tuple[int, ...] | None:
    """The tokens of a breaker's rest (None when the cut split a character), without the
    beginning-of-sequence token some tokenizers put first."""
    try:
        text = rest.decode("utf-8")
    except UnicodeDecodeError:
        return None
    ids = tokenizer.encode(text)
    while ids and (ids[0] in tokenizer.special_ids or not tokenizer.token_bytes(ids[0])):
        ids = ids[1:]
    return tuple(ids[:MAX_BREAKER_TAIL])


def _suffix_matches(tokens: Sequence[int]) -> list[int]:
    """Z-function of `tokens`: z[k] is how many tokens from k on match the start."""
    n = len(tokens)
    z = [0] * n
    if n:
        z[0] = n
    left = right = 0
    for k in range(1, n):
        if k < right:
            z[k] = min(right - k, z[k - left])
        while k + z[k] < n and tokens[z[k]] == tokens[k + z[k]]:
            z[k] += 1
        if k + z[k] > right:
            left, right = k, k + z[k]
    return z


class DRY:
    """ "Don't Repeat Yourself" (pi6am, in KoboldCpp and llama.cpp): a token that would
    extend a repeat of what the text already holds, longer than `allowed_length` tokens, is
    penalised by `multiplier * base ** (repeat length - allowed_length)`; a repeat never
    reaches back across a sequence breaker (a line break, a colon, ...)."""

    def __init__(
        self,
        multiplier: float,
        base: float,
        allowed_length: int,
        last_n: int,
        breakers: SequenceBreakers,
    ) -> None:
        self.multiplier = multiplier
        self.base = base
        self.allowed_length = allowed_length
        self.last_n = last_n  # -1: the whole text
        self.breakers = breakers
        self.max_exponent = int(FLOAT_MAX_LOG / math.log(base)) if base > 1.000001 else 0

    def repeat_lengths(self, sequence: Sequence[int]) -> dict[int, int]:
        """Each token that would extend a repeat, with the longest such repeat's length."""
        window = sequence[-self.last_n :] if self.last_n > 0 else sequence
        size = len(window)
        if size <= self.allowed_length:
            return {}
        limit = self._repeat_limit(window)
        if limit < self.allowed_length:
            return {}
        # Matches of the text's end elsewhere: a Z-function of the reversed window.
        matches = _suffix_matches(window[::-1])
        longest: dict[int, int] = {}
        for back in range(1, size):
            length = min(matches[back], limit)
            if length >= self.allowed_length:
                follower = window[size - back]  # the token after that earlier occurrence
                if longest.get(follower, -1) < length:
                    longest[follower] = length
        return longest

    def _repeat_limit(self, window: Sequence[int]) -> int:
        """How far back a repeat may reach: to just after the newest sequence breaker."""
        size = len(window)
        for back in range(size):  # back = 0: the newest token
            tails = self.breakers.tails.get(window[size - 1 - back])
            if tails is None:
                continue
            longest = -1
            for tail in tails:
                n = len(tail)
                if longest < n <= back and all(
                    tail[i] == window[size - back + i] for i in range(n)
                ):
                    longest = n
            if longest >= 0:
                return back - longest
        return size

    def penalties(self, sequence: Sequence[int]) -> tuple[list[int], torch.Tensor]:
        """The tokens `sequence` has DRY penalise, and by how much (float64), in order."""
        lengths = self.repeat_lengths(sequence)
        tokens = [t for t in lengths if not self.breakers.is_whole_breaker(t)]
        exponents = [lengths[t] - self.allowed_length for t in tokens]
        if self.max_exponent > 0:
            exponents = [min(e, self.max_exponent) for e in exponents]
        amounts = [self.multiplier * self.base**e for e in exponents]
        return tokens, torch.tensor(amounts, dtype=torch.float64)

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor | None = None
        for row, sequence in enumerate(state.sequences):
            tokens, penalty = self.penalties(sequence)
            if not tokens:
                continue
            if out is None:
                out = scores.clone()
            index = torch.tensor(tokens, device=scores.device)
            current = out[row, index].double()
            out[row, index] = (current - penalty.to(scores.device)).to(out.dtype)
        return scores if out is None else out


# -- truncation and temperature ------------------------------------------------------------


class TopNSigma:
    """Keep the tokens whose logit lies within `n` standard deviations of the best one
    (Tang et al. 2024): the same set at any temperature."""

    def __init__(self, n: float) -> None:
        self.n = n

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        finite = scores > NEG_INF
        values = scores.double().masked_fill(~finite, 0.0)
        count = finite.sum(dim=-1, keepdim=True).clamp(min=1)
        mean = values.sum(dim=-1, keepdim=True) / count
        spread = ((values - mean) ** 2).masked_fill(~finite, 0.0).sum(-1, keepdim=True) / count
        best = scores.max(dim=-1, keepdim=True).values.double()
        threshold = best - self.n * spread.sqrt()
        return scores.masked_fill(scores.double() < threshold, NEG_INF)


class XTC:
    """Exclude Top Choices (p-e-w): with chance `probability` at each step, every token at
    least `threshold` likely is removed except the least likely of them, so the text takes
    a less obvious turn whenever there are several good ones."""

    def __init__(self, probability: float, threshold: float, seed: int | None) -> None:
        self.probability = probability
        self.threshold = threshold
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed ^ XTC_SEED_SALT)

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        chance = torch.rand(scores.shape[0], generator=self.generator)
        return self.apply(scores, (chance <= self.probability).to(scores.device))

    def apply(self, scores: torch.Tensor, fire: torch.Tensor) -> torch.Tensor:
        """XTC on the rows where `fire` is true (the step's draw said so)."""
        probs = scores.softmax(dim=-1)
        above = probs >= self.threshold
        fire = fire & (above.sum(dim=-1) >= 2)
        if not bool(fire.any()):
            return scores
        keep = probs.masked_fill(~above, math.inf).argmin(dim=-1, keepdim=True)
        remove = above.scatter(-1, keep, False) & fire.view(-1, 1)
        return scores.masked_fill(remove, NEG_INF)


class DynamicTemperature:
    """Temperature from the entropy of what truncation left (kalomaze's DynaTemp): between
    `temperature - range` (a confident step) and `temperature + range` (an open one). It
    runs last, as in llama.cpp: the truncation before it sees untempered scores."""

    def __init__(self, temperature: float, spread: float, exponent: float) -> None:
        self.low = max(0.0, temperature - spread)
        self.high = temperature + spread
        self.exponent = exponent

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        finite = scores > NEG_INF
        count = finite.sum(dim=-1, keepdim=True)
        log_probs = scores.log_softmax(dim=-1)
        entropy = -(log_probs.exp() * log_probs).masked_fill(~finite, 0.0).sum(-1, keepdim=True)
        normalised = entropy / count.clamp(min=2).log()
        heat = self.low + (self.high - self.low) * normalised.pow(self.exponent)
        tempered = scores / heat.clamp(min=1e-30)
        # A temperature of 0 (low end at 0, certain step): only the best token is left.
        greedy = scores.masked_fill(
            torch.ones_like(finite).scatter(-1, scores.argmax(-1, keepdim=True), False), NEG_INF
        )
        out = torch.where(heat > 0, tempered, greedy)
        return torch.where(count > 1, out, scores)


# -- Mirostat -------------------------------------------------------------------------------


class Mirostat:
    """Mirostat (Basu et al. 2021): truncation that steers each row's surprise towards
    `tau` bits per token, learning a running bound `mu` (from 2 * tau) with rate `eta`
    from each token chosen. Version 2 keeps the tokens whose surprise is at most `mu`;
    version 1 keeps the top k, k estimated from the distribution's Zipf exponent."""

    def __init__(self, version: int, tau: float, eta: float) -> None:
        if version not in (1, 2):
            raise ValueError(f"mirostat is 1 or 2 (got {version})")
        self.version = version
        self.tau = tau
        self.eta = eta
        self.mu: dict[int, float] = {}  # per row, by the row's key in its request

    def row_mu(self, state: DecodeState, row: int) -> float:
        return self.mu.get(state.key(row), 2.0 * self.tau)

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(dim=-1)
        keep = torch.zeros_like(scores, dtype=torch.bool)
        for row in range(scores.shape[0]):
            mu = self.row_mu(state, row)
            if self.version == 2:
                kept = -torch.log2(probs[row]) <= mu
                if not bool(kept.any()):
                    kept[int(probs[row].argmax())] = True
                keep[row] = kept
            else:
                k = self._top_k(probs[row], mu)
                keep[row, torch.topk(probs[row], k).indices] = True
        return scores.masked_fill(~keep, NEG_INF)

    def _top_k(self, probs: torch.Tensor, mu: float) -> int:
        k = self.estimate_k(probs, mu)
        if math.isnan(k):
            return 1
        # llama.cpp converts k to a 32-bit int first: beyond that range (a flat distribution
        # and a high target) it ends up with 1 token on x86, where all are meant (here).
        return max(1, min(int(min(k, probs.shape[-1])), probs.shape[-1]))

    def estimate_k(self, probs: torch.Tensor, mu: float) -> float:
        """Mirostat 1's k before rounding: from the Zipf exponent s of the likeliest
        tokens, k = (e * 2**mu / (1 - N**-e)) ** (1 / s), with e = s - 1."""
        vocab = probs.shape[-1]
        best = torch.topk(probs, min(MIROSTAT_M, vocab)).values.double()
        best = best[best > 0]
        if len(best) < 2:
            return 1.0
        ranks = torch.arange(1, len(best), dtype=torch.float64)
        t = torch.log((ranks + 1) / ranks)
        b = torch.log(best[:-1] / best[1:])
        s_hat = float((t * b).sum() / (t * t).sum())
        epsilon = s_hat - 1
        # C's float arithmetic: x ** (1 / 0) is 0 or infinite, a negative x ** y is NaN.
        try:
            base = (epsilon * 2.0**mu) / (1 - vocab ** (-epsilon))
            return math.pow(base, 1 / s_hat if s_hat != 0 else math.inf)
        except OverflowError:
            return math.inf
        except (ValueError, ZeroDivisionError):
            return math.nan

    def chosen(self, state: DecodeState, scores: torch.Tensor, tokens: torch.Tensor) -> None:
        log_probs = scores.log_softmax(dim=-1)
        for row, token in enumerate(tokens.tolist()):
            if token < 0:
                continue
            surprise = -float(log_probs[row, token]) / LN2
            self.mu[state.key(row)] = self.row_mu(state, row) - self.eta * (surprise - self.tau)
