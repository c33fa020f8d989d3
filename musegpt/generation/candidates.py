"""Processors applied to a few candidate tokens instead of the whole vocabulary.

Before top-k, the usual processors (penalties, DRY, bans, the minimum length) only ever
lower the scores of tokens they name. So the best k after them are among the best few
of the raw scores, provided enough of those few still beat every token left out (the
decoder checks that; `shortlist_scores`). Each function here gives exactly what its
processor gives, on the candidates' scores `values` (B, n) of tokens `ids` (B, n) — the
same arithmetic on fewer numbers (tests/test_llama_decoding.py compares them) — or None
for a processor it does not know or one that may raise a score (a negative penalty).
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Container

import torch

from musegpt.generation.processors import (
    NEG_INF,
    BanTokens,
    BlockTakenBack,
    DecodeState,
    LogitsProcessor,
    MinNewTokens,
    PresenceFrequencyPenalty,
    RepetitionPenalty,
    WatchText,
)
from musegpt.generation.samplers import DRY

# The processors `on_candidates` knows.
ON_CANDIDATES = (
    BanTokens,
    MinNewTokens,
    BlockTakenBack,
    PresenceFrequencyPenalty,
    RepetitionPenalty,
    DRY,
    WatchText,
)


def on_candidates(
    step: LogitsProcessor, state: DecodeState, values: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor | None:
    """`step` applied to the candidates' scores, or None (see the module)."""
    if isinstance(step, WatchText):
        step.look(state)
        return values
    if isinstance(step, BanTokens):
        return values.masked_fill(_banned(step, ids), NEG_INF)
    if isinstance(step, MinNewTokens):
        lengths = zip(state.sequences, state.prompt_lengths, strict=True)
        short = torch.tensor([len(seq) - prompt < step.minimum for seq, prompt in lengths])
        return values.masked_fill(torch.isin(ids, step.eos_index) & short.view(-1, 1), NEG_INF)
    if isinstance(step, BlockTakenBack):
        return _block_taken_back(state, values, ids)
    if isinstance(step, PresenceFrequencyPenalty):
        if step.presence < 0 or step.frequency < 0:
            return None
        return _presence_frequency(step, state, values, ids)
    if isinstance(step, RepetitionPenalty):
        return None if step.penalty < 1 else _repetition(step, state, values, ids)
    if isinstance(step, DRY):
        return None if step.multiplier < 0 else _dry(step, state, values, ids)
    return None


_BANNED: weakref.WeakKeyDictionary[BanTokens, torch.Tensor] = weakref.WeakKeyDictionary()


def _banned(step: BanTokens, ids: torch.Tensor) -> torch.Tensor:
    """Which of `ids` `step` bans, from a table made once per decode (looking 6,250 banned
    ids up among the candidates at each step cost ~0.2 ms)."""
    table = _BANNED.get(step)
    if table is None:
        size = int(step.index.max()) + 1 if step.index.numel() else 0
        table = torch.zeros(size + 1, dtype=torch.bool)  # the last: every id beyond them
        table[step.index] = True
        _BANNED[step] = table
    return table[ids.clamp(max=table.shape[0] - 1)]


def _columns(ids: torch.Tensor, row: int, wanted: Container[int]) -> tuple[list[int], list[int]]:
    """The columns of row `row` whose token is in `wanted`, and those tokens."""
    columns, tokens = [], []
    for column, token in enumerate(ids[row].tolist()):
        if token in wanted:
            columns.append(column)
            tokens.append(token)
    return columns, tokens


def _block_taken_back(state: DecodeState, values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    if not any(state.blocked):
        return values
    out = values.clone()
    for row, blocked in enumerate(state.blocked):
        if blocked:
            taken_back = torch.isin(ids[row], torch.tensor(sorted(blocked)))
            out[row] = out[row].masked_fill(taken_back, NEG_INF)
    return out


def _presence_frequency(
    step: PresenceFrequencyPenalty, state: DecodeState, values: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    out = values.clone()
    for row in range(values.shape[0]):
        counts = Counter(state.generated(row))
        columns, tokens = _columns(ids, row, counts)
        if columns:
            times = torch.tensor([counts[t] for t in tokens], dtype=out.dtype)
            index = torch.tensor(columns)
            out[row].index_add_(0, index, -(step.frequency * times + step.presence))
    return out


def _repetition(
    step: RepetitionPenalty, state: DecodeState, values: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    out = values.clone()
    for row, seq in enumerate(state.sequences):
        window = seq[-step.last_n :] if step.last_n > 0 else seq
        columns, _ = _columns(ids, row, set(window))
        if columns:
            picked = out[row, columns]
            out[row, columns] = torch.where(
                picked < 0, picked * step.penalty, picked / step.penalty
            )
    return out


def _dry(step: DRY, state: DecodeState, values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    out = values.clone()
    for row, sequence in enumerate(state.sequences):
        tokens, penalty = step.penalties(sequence)
        position = {token: i for i, token in enumerate(tokens)}
        columns, found = _columns(ids, row, position)
        if columns:
            amounts = penalty[[position[t] for t in found]]
            current = out[row, columns].double()
            out[row, columns] = (current - amounts).to(out.dtype)
    return out
