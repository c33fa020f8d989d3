"""Guards that steer a Chinese chapter off what its bans would take back, before it is
written rather than decoded and then taken back.

A chapter may not begin a sentence with the first `RUN` characters of an earlier sentence
(`story.retold`, `story.OwnRetelling`), nor say a clause a third time (`story.CirclingLines`):
the decoder finds such a stretch once it is written and takes back every token of it. In
the Chinese README story the retelling take-backs were 35 of 57 (6-7 tokens each, a
sentence's first nine characters); with them guarded, the circling ones were the largest
left (9 tokens each). A guard acts earlier: once `GUARD_FROM` characters of a forbidden
opening are written, the tokens that would go on along it are banned, so the sentence (the
clause) turns elsewhere there and nothing is decoded in vain (`RetellGuard`,
`CircleGuard`). The bans stay as they were behind the guards (a token a guard does not
know, a byte of a character, is still caught by them), so nothing gets through that did
not before.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import ClassVar

import torch

from musegpt.generation.processors import NEG_INF, DecodeState
from musegpt.studio import plan_checks as checks
from musegpt.studio.plan_rules import short_pieces
from musegpt.studio.text import SENTENCE_END
from musegpt.tokenizer.base import Tokenizer

RUN = 9  # characters: a Chinese sentence may not begin with an earlier one's first RUN
GUARD_FROM = 5  # characters of an opening written: from here on, no token goes on along it
TAIL_TOKENS = 24  # the current sentence is looked for in this many newest tokens
RETOLD_SENTENCES = 80  # the most recent earlier sentences whose openings are banned
HAN_TAIL = re.compile(checks.HAN_RUN.pattern + "$")  # the run of Han characters a text ends in


def openings(sentences: list[str], longer: int = 2) -> list[str]:
    """The first `RUN` characters of these sentences (of those at least `longer`
    characters longer): what a Chinese chapter may not begin a sentence with again."""
    found: dict[str, None] = {}
    for sentence in sentences:
        body = sentence.strip()
        if len(body) >= RUN + longer:
            found[body[:RUN]] = None
    return list(found)


def told_openings(text: str) -> list[str]:
    """The openings of `text`'s recent sentences (an earlier chapter's, the chapter so far)."""
    return openings(checks.sentences(text)[-RETOLD_SENTENCES:])


def recent_text(
    tokenizer: Tokenizer, state: DecodeState, row: int, before: str, tokens: int
) -> str:
    """The text of `row`'s newest `tokens` tokens, after `before` (what the row continues)
    while the row has written no more than that."""
    generated = state.generated(row)
    text = tokenizer.decode(generated[-tokens:])
    return before + text if len(generated) <= tokens else text


class RowBans:
    """A logits processor that bans, for each row, the tokens `row_bans` names (most steps
    none: the scores are then handed on unchanged)."""

    def row_bans(self, state: DecodeState, row: int) -> list[int]:
        raise NotImplementedError

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        bans = [(row, ids) for row in range(scores.shape[0]) if (ids := self.row_bans(state, row))]
        if not bans:
            return scores
        scores = scores.clone()
        for row, ids in bans:
            scores[row, ids] = NEG_INF
        return scores


class OpeningGuard(RowBans):
    """Bans, for each row, the tokens that would take the stretch it is writing (a sentence,
    a clause) further along a forbidden opening, once `GUARD_FROM` characters of it are
    written. Changes no score on most steps (a stretch past its openings' length, or not
    on any of them)."""

    LENGTH: ClassVar[int]  # characters in an opening

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.pieces = short_pieces(tokenizer)

    def so_far(self, text: str) -> str:
        """What of `text` (a row's newest tokens) the stretch being written is."""
        raise NotImplementedError

    def openings(self, state: DecodeState, row: int) -> Iterable[str]:
        """The openings `row` may not write."""
        raise NotImplementedError

    def written(self, sequence: list[int]) -> str | None:
        """The stretch the row is writing (from the prompt's end on), when it is long
        enough to guard and not past the openings' length."""
        body = self.so_far(self.tokenizer.decode(sequence[-TAIL_TOKENS:]))
        return body if GUARD_FROM <= len(body) < self.LENGTH else None

    def continuing(self, state: DecodeState, row: int) -> list[int]:
        """The tokens that would take `row`'s stretch further along a forbidden opening."""
        body = self.written(state.sequences[row])
        if body is None:
            return []
        banned: list[int] = []
        for opening in self.openings(state, row):
            if opening.startswith(body):
                rest = opening[len(body) :]
                for end in range(1, len(rest) + 1):
                    banned += self.pieces.get(rest[:end], [])
        return banned

    def row_bans(self, state: DecodeState, row: int) -> list[int]:
        return self.continuing(state, row)


class RetellGuard(OpeningGuard):
    """A sentence may not go on along the opening of one in `told` (the earlier chapters
    and the chapter so far: `story.retold`) or of the row's own whole sentences
    (`story.OwnRetelling`)."""

    LENGTH = RUN

    def __init__(self, tokenizer: Tokenizer, told: Iterable[str]) -> None:
        super().__init__(tokenizer)
        self.told = {opening for text in told for opening in told_openings(text)}

    def so_far(self, text: str) -> str:
        start = max((m.end() for m in SENTENCE_END.finditer(text)), default=-1)
        start = max(start, text.rfind("\n") + 1 if "\n" in text else -1)
        return text[start:].lstrip() if start >= 0 else ""  # none begins here: too long

    def openings(self, state: DecodeState, row: int) -> Iterable[str]:
        # The row's own whole sentences (the last piece is the one being written), as
        # `OwnRetelling` keys them.
        own = checks.sentences(self.tokenizer.decode(state.generated(row)))[:-1]
        return self.told | set(openings(own, longer=0))


class CircleGuard(OpeningGuard):
    """A clause may not go on along the first `CLAUSE_CORE` characters of a clause said
    twice already (in `before`, the chapter so far, and the row's text): `CirclingLines`
    takes such a clause back once it ends (the commonest take-back left in the Chinese
    README story, 9 tokens each)."""

    LENGTH = checks.CLAUSE_CORE

    def __init__(self, tokenizer: Tokenizer, before: str = "") -> None:
        super().__init__(tokenizer)
        self.before = before

    def so_far(self, text: str) -> str:
        start = max((m.end() for m in checks.CLAUSE_MARK.finditer(text)), default=-1)
        body = text[start:] if start >= 0 else ""
        return body if checks.HAN_RUN.fullmatch(body) else ""  # units are Han characters

    def openings(self, state: DecodeState, row: int) -> Iterable[str]:
        text = self.before + self.tokenizer.decode(state.generated(row))
        said: Counter[str] = Counter()
        for clause in checks.CLAUSE.finditer(text):
            if clause.end() == len(text):
                break  # the one being written
            units = checks.clause_units(clause.group(), "zh")
            if len(units) >= self.LENGTH:
                said["".join(units[: self.LENGTH])] += 1
        return [opening for opening, times in said.items() if times >= checks.CLAUSE_MOST]


class PhraseGuard(RowBans):
    """A run of Han characters may not go on along one the story has said twice already
    (`checks.circling_phrases`; `story.CirclingPhrases` takes such a run back once it is
    written): once `GUARD_FROM` of its characters are written, no token goes on along it,
    and from fewer, no token completes it."""

    def __init__(self, tokenizer: Tokenizer, before: str) -> None:
        self.tokenizer = tokenizer
        self.pieces = short_pieces(tokenizer)
        self.before = checks.said_phrases(before)
        self.twice = {run for run, times in self.before.items() if times >= checks.PHRASE_MOST}

    def forbidden(self, text: str) -> set[str]:
        """The runs said twice in the story and `text` (a row's draft)."""
        own = checks.said_phrases(text)
        return self.twice | {
            run for run, times in own.items() if self.before[run] + times >= checks.PHRASE_MOST
        }

    def banned(self, sequence: list[int], generated: list[int]) -> list[int]:
        """The tokens that would take the row's last run of Han characters along a
        forbidden one."""
        tail = self.tokenizer.decode(sequence[-TAIL_TOKENS:])
        run = HAN_TAIL.search(tail)
        if run is None:
            return []
        written = run.group()[-(checks.PHRASE_RUN - 1) :]
        banned: list[int] = []
        for phrase in self.forbidden(self.tokenizer.decode(generated)):
            for have in range(len(written), 0, -1):
                if not written.endswith(phrase[:have]):
                    continue
                rest = phrase[have:]
                ends = range(1, len(rest) + 1) if have >= GUARD_FROM else [len(rest)]
                for end in ends:
                    banned += self.pieces.get(rest[:end], [])
                break  # the longest part of it written decides
        return banned

    def row_bans(self, state: DecodeState, row: int) -> list[int]:
        return self.banned(state.sequences[row], state.generated(row))
