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

from dataclasses import dataclass

import torch

from musegpt.generation.processors import NEG_INF, DecodeState
from musegpt.originality.index import CopyIndex, Interval


@dataclass
class _RowMatch:
    generated: int  # generated tokens when it was found
    last: int  # the newest of them (-1 for none): a changed history is noticed
    span: Interval


class CopyGuard:
    """Bans every token that would make a span copied from the corpus `max_copy` + 1 long."""

    def __init__(self, index: CopyIndex, max_copy: int) -> None:
        self.index = index
        self.max_copy = max_copy
        self.rows: dict[int, _RowMatch] = {}

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor | None = None
        for row, sequence in enumerate(state.sequences):
            span = self._span(state.key(row), sequence, state.prompt_lengths[row])
            if span.depth < self.max_copy:
                continue
            banned = self.index.followers(span)
            banned = banned[banned < scores.shape[-1]]
            if banned.size:
                out = scores.clone() if out is None else out
                out[row, torch.from_numpy(banned)] = NEG_INF
        return scores if out is None else out

    def longest_copy(self, key: int) -> int:
        """The longest copied span that ends the row's text as last seen (tokens)."""
        found = self.rows.get(key)
        return found.span.depth if found is not None else 0

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
            span = self.index.extend(before.span, newest)
            if not span.count:
                tail = sequence[prompt_length:][-before.span.depth - 1 :]
                span = self.index.longest_suffix(tail, before.span.depth)
        else:  # a new row, or one that was shortened by a backtrack
            tail = sequence[prompt_length:][-self.max_copy :]
            span = self.index.longest_suffix(tail, self.max_copy)
        self.rows[key] = _RowMatch(generated, newest, span)
        return span


def copy_guards(index: CopyIndex | None, max_copy: int | None) -> list[CopyGuard]:
    """The guard a decode with this `max_copy` needs (none when it is None)."""
    if max_copy is None:
        return []
    if index is None:
        raise ValueError(
            "max_copy needs an originality index of the model's training corpus, and this "
            "model has none: build one with `musegpt originality index --model NAME`"
        )
    return [CopyGuard(index, max_copy)]
