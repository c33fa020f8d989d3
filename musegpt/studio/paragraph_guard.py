"""A Chinese chapter's narration comes in paragraphs, not lines: a paragraph without speech
breaks only after its second sentence (or once it is long).

Left alone, the default model broke the line after nearly every sentence: 411 of the eval's
470 Chinese paragraphs were one sentence (English: 155 of 269), so a chapter read as a
list of lines, "她笑了起来。" standing alone between them. The guard bans the tokens that
hold a line break while the paragraph being written is narration with one sentence and
few characters; speech paragraphs are left as they are (a line of talk is a paragraph).

Not English: held to its paragraphs, an English chapter (`write story "a robot who discovers
love" --seed 4`) went over to lines of talk, "Vivien said: …" after "Vixen said: …", which
the rule leaves alone, and wrote less narration than before.
"""

from __future__ import annotations

import re

from musegpt.generation.processors import DecodeState
from musegpt.studio.plan_rules import matching_ids
from musegpt.studio.retell_guard import RowBans, recent_text
from musegpt.studio.speech_guard import QUOTE
from musegpt.tokenizer.base import Tokenizer

LEAST_SENTENCES = 2  # in a narration paragraph before it may break
LONG_ENOUGH = 30  # characters: a paragraph of one long sentence may break
SENTENCE_END = re.compile(r"[。！？…]+[”」]?")
TAIL_TOKENS = 96  # more than one short paragraph of the default model's

# A line break, or the ideographic space of Chinese print's indent: the model also begins a
# paragraph inside a line so ("…爱看电视。 \u3000\u3000在电视里…"), which cleaning sets as
# a break.
BREAK = re.compile("[\n\u3000]")


def may_break(paragraph: str) -> bool:
    """Whether the Chinese `paragraph` being written may end here."""
    if not paragraph.strip() or QUOTE["zh"].search(paragraph) or len(paragraph) >= LONG_ENOUGH:
        return True
    return len(SENTENCE_END.findall(paragraph)) >= LEAST_SENTENCES


class ParagraphFloor(RowBans):
    """Bans, for each row, the line-break tokens while its paragraph (counting `before`, the
    chapter so far, for a row's first tokens) `may_break` not."""

    def __init__(self, tokenizer: Tokenizer, before: str) -> None:
        self.tokenizer, self.before = tokenizer, before
        self.breaks = matching_ids(tokenizer, BREAK)

    def row_bans(self, state: DecodeState, row: int) -> list[int]:
        text = recent_text(self.tokenizer, state, row, self.before, TAIL_TOKENS)
        return [] if may_break(text[text.rfind("\n") + 1 :]) else self.breaks
