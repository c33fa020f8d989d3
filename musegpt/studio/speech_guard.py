"""A chapter's talk is broken by narration: after `MOST_SPEECHES` paragraphs in a row that
hold speech, the next is written without a quotation mark.

Left alone, the default model let a chapter's dialogue run on in short lines that went
nowhere: the README's story, unseeded, ended in thirty lines of "I love you." / "You love
me." / "Fine!" / "Bye bye." with no line of narration between them, and 6 of the eval's
24 English chapters (5 of 24 Chinese) had a run of five speech paragraphs or more. The
model's narration is where its story moves (someone goes somewhere, finds something);
its exchanges circle. The guard bans the tokens that open or close a quotation in such a
paragraph, so the model narrates there; the paragraph after it may speak again.

Shorter runs went nowhere too when no one was named in them: "“我要回去了！”" /
"“我一定回去了！”" / "“我一定会回来！”" / "“我必须回家了！”", four lines that a reader
cannot give to anyone (6 of the eval's 24 Chinese chapters and 4 of 24 English ones had
three such bare lines in a row). After `MOST_BARE` of them a paragraph may not open with
a quotation mark: it begins with narration or a speaker ("杜子龙说：“…”").
"""

from __future__ import annotations

import re

from musegpt.generation.processors import DecodeState
from musegpt.studio.plan_rules import matching_ids
from musegpt.studio.retell_guard import RowBans, recent_text
from musegpt.studio.text import Lang
from musegpt.tokenizer.base import Tokenizer

MOST_SPEECHES = 4  # paragraphs in a row that may hold speech
MOST_BARE = 2  # paragraphs in a row that may be speech alone (no speaker, no narration)
QUOTE: dict[Lang, re.Pattern[str]] = {"en": re.compile(r"[\"“”]"), "zh": re.compile(r"[\"“”「」]")}
# Tokens that open a quotation in single quotes (a space, then the mark): with double quotes
# banned, the model went on talking in single ones ("He said, 'It's okay…'"). An apostrophe
# inside a word ("don't") comes without the space.
SINGLE_OPENING = re.compile(r"^\s['‘]")
# Tokens decoded to find the paragraphs: four speech paragraphs of the default model's
# (about 15 tokens each, 40 at most in the eval) and the one being written.
TAIL_TOKENS = 240


def speeches_in_a_row(text: str, lang: Lang) -> int:
    """How many of `text`'s whole paragraphs (lines; the last, being written, aside) right
    before its last one hold speech."""
    *whole, _ = text.split("\n")
    count = 0
    for line in reversed(whole):
        if not line.strip():
            continue
        if not QUOTE[lang].search(line):
            break
        count += 1
    return count


# A quotation (the closing mark may still be to come): what a bare speech line holds.
QUOTATION: dict[Lang, re.Pattern[str]] = {
    "en": re.compile(r'"[^"\n]*"?|“[^”\n]*”?'),
    "zh": re.compile(r'"[^"\n]*"?|“[^”\n]*”?|「[^」\n]*」?'),
}
WORD = re.compile(r"\w")


def bare_speech(line: str, lang: Lang) -> bool:
    """Whether a line is speech alone: quotations and punctuation, no word outside them
    (no "he said", no narration)."""
    return bool(QUOTATION[lang].search(line)) and not WORD.search(QUOTATION[lang].sub("", line))


def bare_in_a_row(text: str, lang: Lang) -> int:
    """How many of `text`'s whole lines (the last, being written, aside) right before its
    last one are bare speech (`bare_speech`)."""
    *whole, _ = text.split("\n")
    count = 0
    for line in reversed(whole):
        if not line.strip():
            continue
        if not bare_speech(line, lang):
            break
        count += 1
    return count


# A token that holds a quotation mark of the language or opens one in single quotes.
QUOTE_TOKEN: dict[Lang, re.Pattern[str]] = {
    lang: re.compile(f"{mark.pattern}|{SINGLE_OPENING.pattern}") for lang, mark in QUOTE.items()
}


def quote_ids(tokenizer: Tokenizer, lang: Lang) -> list[int]:
    """The tokens holding a quotation mark of `lang`, or opening one in single quotes."""
    return matching_ids(tokenizer, QUOTE_TOKEN[lang])


class SpeechRun(RowBans):
    """Bans, for each row, the quotation marks of a paragraph that follows `MOST_SPEECHES`
    speech paragraphs in a row (counting those of `before`, the chapter so far), unless
    the paragraph already holds one (a speech begun before the guard saw it is closed);
    and the marks that would open a paragraph after `MOST_BARE` bare speech lines."""

    def __init__(self, tokenizer: Tokenizer, before: str, lang: Lang) -> None:
        self.tokenizer, self.lang = tokenizer, lang
        self.before = before
        self.quotes = quote_ids(tokenizer, lang)

    def row_bans(self, state: DecodeState, row: int) -> list[int]:
        text = recent_text(self.tokenizer, state, row, self.before, TAIL_TOKENS)
        current = text[text.rfind("\n") + 1 :]
        if QUOTE[self.lang].search(current):
            return []
        if speeches_in_a_row(text, self.lang) >= MOST_SPEECHES:
            return self.quotes
        opening = not current.strip()
        return self.quotes if opening and bare_in_a_row(text, self.lang) >= MOST_BARE else []
