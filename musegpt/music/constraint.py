"""Constrained decoding for ABC: a logits processor that lets a model write only tunes the
grammar of `musegpt.music.grammar` accepts, for any tokenizer.

Per tokenizer, once: the text of every token made only of ABC body characters, in a trie
(a 262k-token vocabulary has a few thousand such tokens; every other token is never allowed
in a tune). Per step: each row's grammar state is advanced by the tokens it added since
the last step, and its mask is looked up by state; a state seen for the first time walks
the trie with the grammar (pruning at the first character the grammar refuses), so a
step costs a dictionary look-up and one `masked_fill` for the whole batch.

The prompt must end with the header (`K:` line and its newline): metre and unit note
length are read from it, so every row of a batch may ask for its own metre. The header's
order is fixed by `Header.text`, which writes the prompt.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch

from musegpt.generation.processors import NEG_INF, DecodeState
from musegpt.music.abc import parse_header
from musegpt.music.grammar import ALPHABET, Grammar, State
from musegpt.tokenizer.base import Tokenizer


@dataclass
class _Node:
    ids: list[int] = field(default_factory=list)  # tokens whose text ends here
    kids: dict[str, _Node] = field(default_factory=dict)


class TokenTable:
    """The ABC-only tokens of a vocabulary, as texts and as a trie."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.vocab_size = tokenizer.vocab_size
        self.eot_id = tokenizer.eot_id
        self.texts: list[str | None] = []
        self.root = _Node()
        for token in range(self.vocab_size):
            text: str | None = None
            if token != self.eot_id:
                try:
                    text = tokenizer.token_bytes(token).decode("ascii")
                except (UnicodeDecodeError, ValueError):
                    text = None
                if not text or not set(text) <= ALPHABET:
                    text = None
            self.texts.append(text)
            if text is not None:
                node = self.root
                for ch in text:
                    node = node.kids.setdefault(ch, _Node())
                node.ids.append(token)


_TABLES: weakref.WeakKeyDictionary[Tokenizer, TokenTable] = weakref.WeakKeyDictionary()


def token_table(tokenizer: Tokenizer) -> TokenTable:
    try:
        table = _TABLES.get(tokenizer)
        if table is None:
            table = _TABLES[tokenizer] = TokenTable(tokenizer)
        return table
    except TypeError:  # a tokenizer that cannot be weakly referenced: no sharing
        return TokenTable(tokenizer)


class _Masks:
    """Allowed-token masks of one grammar, by state."""

    def __init__(self, grammar: Grammar, table: TokenTable) -> None:
        self.grammar = grammar
        self.table = table
        self.cache: dict[State, torch.Tensor] = {}

    def mask(self, state: State | None) -> torch.Tensor:
        """(vocab,) bool: the tokens allowed after `state` (None: a row the grammar already
        refused, e.g. a prompt that went wrong: only end of text)."""
        found = self.cache.get(state) if state is not None else None
        if found is not None:
            return found
        allowed = torch.zeros(self.table.vocab_size, dtype=torch.bool)
        if state is None or state.ended:
            allowed[self.table.eot_id] = True
            if state is None:
                return allowed
        ids: list[int] = []
        self._walk(self.table.root, state, ids)
        if ids:
            allowed[torch.tensor(ids, dtype=torch.long)] = True
        self.cache[state] = allowed
        return allowed

    def _walk(self, node: _Node, state: State, out: list[int]) -> None:
        step = self.grammar.step
        for ch, kid in node.kids.items():
            after = step(state, ch)
            if after is None:
                continue
            out.extend(kid.ids)
            if kid.kids:
                self._walk(kid, after, out)


@dataclass
class _Row:
    prompt: tuple[int, ...]
    masks: _Masks
    ids: list[int]
    states: list[State | None]  # states[i]: after the first i generated tokens


class AbcConstraint:
    """Logits processor: the generated text is a valid ABC body of `bars` bars in the metre
    of the prompt's header, ending with a final bar line and end of text."""

    def __init__(self, tokenizer: Tokenizer, bars: int = 16) -> None:
        self.tokenizer = tokenizer
        self.table = token_table(tokenizer)
        self.bars = bars
        self._grammars: dict[tuple[Fraction, str], _Masks] = {}
        self._rows: dict[int, _Row] = {}

    def _masks_for(self, prompt: tuple[int, ...]) -> _Masks:
        text = self.tokenizer.decode(list(prompt))
        start = text.rfind("X:")
        try:
            header, rest = parse_header(text[start if start >= 0 else 0 :])
        except ValueError as err:
            raise ValueError(f"an ABC prompt must be a header ending with K: ({err})") from None
        if rest.strip():
            raise ValueError(f"an ABC prompt must end with the header's K: line, not {rest!r}")
        bar, tonic = header.bar_units, header.key[:1].upper()
        if tonic not in "ABCDEFG":  # "K:none", a key music21 would not read: no tonic rule
            tonic = ""
        if (bar, tonic) not in self._grammars:
            grammar = Grammar(bar, self.bars, tonic or None)
            self._grammars[bar, tonic] = _Masks(grammar, self.table)
        return self._grammars[bar, tonic]

    def state(self, row: int, prompt: tuple[int, ...], generated: list[int]) -> State | None:
        """The grammar state after `generated`, reusing the previous step's work when the
        row only grew (the decoder may also backtrack or start a new batch)."""
        cached = self._rows.get(row)
        if cached is None or cached.prompt != prompt:
            masks = self._masks_for(prompt)
            cached = self._rows[row] = _Row(prompt, masks, [], [masks.grammar.start()])
        common = 0
        limit = min(len(cached.ids), len(generated))
        while common < limit and cached.ids[common] == generated[common]:
            common += 1
        del cached.ids[common:]
        del cached.states[common + 1 :]
        grammar = cached.masks.grammar
        current = cached.states[-1]
        for token in generated[common:]:
            text = self.table.texts[token] if 0 <= token < len(self.table.texts) else None
            current = None if text is None or current is None else grammar.feed(current, text)
            cached.ids.append(token)
            cached.states.append(current)
        return current

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        masks = []
        for row in range(scores.shape[0]):
            seq = state.sequences[row]
            prompt = tuple(seq[: state.prompt_lengths[row]])
            current = self.state(row, prompt, state.generated(row))
            masks.append(self._rows[row].masks.mask(current))
        allowed = torch.stack(masks).to(scores.device)
        return scores.masked_fill(~allowed, NEG_INF)


def abc_constraints(tokenizer: Tokenizer, bars: int = 16) -> list[Any]:
    """The processors to pass as `constraints=` to an engine for `bars`-bar tunes."""
    return [AbcConstraint(tokenizer, bars)]
