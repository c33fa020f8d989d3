"""The originality guard: `SamplingParams.max_copy` as a logits processor.

Per row it keeps the longest span ending the generated text that occurs in the indexed
training corpus (an interval of the corpus's suffix array, `CopyIndex`). While that span
is shorter than `max_copy` tokens nothing is banned: no token can make a copy longer than
the span plus one. Once it is `max_copy` long, the tokens that follow it somewhere in the
corpus are banned, so no span of more than `max_copy` tokens is ever copied. When every
token is banned the decoder's dead end takes back the newest token and tries another.

Each step costs one narrowing of the interval by the newest token (a binary search in the
span's interval); when the span cannot be extended it is found again from scratch for the
shorter suffixes, which happens at most once per token on average (a span grows by one
token a step, so it cannot shrink faster). A backtrack (banned phrases, dead ends) shortens
a row: its span is then found from scratch.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from musegpt.generation.processors import NEG_INF, DecodeState
from musegpt.originality.index import CopyIndex, Interval
from musegpt.tokenizer.base import Tokenizer


@dataclass
class _RowMatch:
    generated: int  # generated tokens when it was found
    last: int  # the newest of them (-1 for none): a changed history is noticed
    span: Interval


@dataclass(frozen=True)
class Aliases:
    """Tokens that spell one ASCII character which the character's own token also spells (a
    byte-fallback token, or Gemma's <0x41>): the guard reads them as that token and bans
    them with it, so a copy cannot slip through spelt with the other token."""

    canonical: dict[int, int]  # alias -> the token the tokenizer itself would use
    spellings: dict[int, list[int]]  # that token -> its aliases

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> Aliases:
        found = _aliases.get(tokenizer)
        if found is None:
            canonical: dict[int, int] = {}
            for token in range(tokenizer.vocab_size):
                data = tokenizer.token_bytes(token)
                if len(data) == 1 and data[0] < 128:
                    own = tokenizer.encode(data.decode())
                    if len(own) == 1 and own[0] != token:
                        canonical[token] = own[0]
            spellings: dict[int, list[int]] = {}
            for alias, token in canonical.items():
                spellings.setdefault(token, []).append(alias)
            found = _aliases[tokenizer] = cls(canonical, spellings)
        return found


_aliases: weakref.WeakKeyDictionary[Tokenizer, Aliases] = weakref.WeakKeyDictionary()


class CopyGuard:
    """Bans every token that would make a span copied from the corpus `max_copy` + 1 long."""

    def __init__(self, index: CopyIndex, max_copy: int, aliases: Aliases | None = None) -> None:
        self.index = index
        self.max_copy = max_copy
        self.aliases = aliases or Aliases({}, {})
        self.rows: dict[int, _RowMatch] = {}

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor | None = None
        for row, sequence in enumerate(state.sequences):
            span = self._span(state.key(row), sequence, state.prompt_lengths[row])
            if span.depth < self.max_copy:
                continue
            followers = self.index.followers(span).tolist()
            spellings = self.aliases.spellings
            banned = [*followers, *(a for f in followers for a in spellings.get(f, ()))]
            banned = [t for t in banned if t < scores.shape[-1]]
            if banned:
                out = scores.clone() if out is None else out
                out[row, banned] = NEG_INF
        return scores if out is None else out

    def _tail(self, sequence: list[int], prompt_length: int, length: int) -> list[int]:
        """The last `length` generated tokens, each as the tokenizer would spell it."""
        canonical = self.aliases.canonical
        start = max(prompt_length, len(sequence) - length)
        return [canonical.get(t, t) for t in sequence[start:]]

    def _span(self, key: int, sequence: list[int], prompt_length: int) -> Interval:
        generated = len(sequence) - prompt_length
        newest = sequence[-1] if generated else -1
        before = self.rows.get(key)
        if before is not None and before.generated == generated and before.last == newest:
            return before.span  # asked again at the same step
        if generated == 0:
            span = self.index.everything()
        elif (
            before is not None
            and before.generated == generated - 1
            and (generated == 1 or before.last == sequence[-2])
        ):
            span = self.index.extend(before.span, self.aliases.canonical.get(newest, newest))
            if not span.count:
                tail = self._tail(sequence, prompt_length, before.span.depth + 1)
                span = self.index.longest_suffix(tail, before.span.depth)
        else:  # a new row, or one that was shortened by a backtrack
            tail = self._tail(sequence, prompt_length, self.max_copy)
            span = self.index.longest_suffix(tail, self.max_copy)
        self.rows[key] = _RowMatch(generated, newest, span)
        return span


def copy_guards(
    index: CopyIndex | None, max_copy: int | None, tokenizer: Tokenizer
) -> list[CopyGuard]:
    """The guard a decode with this `max_copy` needs (none when it is None)."""
    if max_copy is None:
        return []
    if index is None:
        raise ValueError(
            "max_copy needs an originality index of the model's training corpus, and this "
            "model has none: build one with `musegpt originality index --model NAME`"
        )
    return [CopyGuard(index, max_copy, Aliases.of(tokenizer))]
