"""A word said too often in a Chinese chapter is not written again there.

With no sentence, clause or run of characters said again (`story.EchoedSentences`,
`CirclingLines`, `CirclingPhrases`), the default model went round a word instead: 答应
twelve times in a chapter of 257 characters ("我答应你的，你会答应"). `checks.overused_words`
names the words said `checks.WORD_MOST` times in the chapter's last `checks.WORD_WINDOW`
characters; this guard bans the tokens that would write one of them again, so the sentence
says something else instead of being taken back once written.

On English chapters the same guard made them shorter (276 -> 231 words on the eval's eight
premises) and more given to lines of dialogue that circle (1 -> 4 of 24), the model falling
back on "He said: …" once its nouns and verbs were spent (sixteenth session). English is
guarded only against a word going round far more: said `ENGLISH_MOST` times (seen: "bored"
twelve times in a chapter of the README's story, "She was bored, and she was bored.").
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from musegpt.generation.processors import DecodeState
from musegpt.studio import plan_checks as checks
from musegpt.studio.plan_rules import han_tokens, vocab_texts
from musegpt.studio.retell_guard import RowBans
from musegpt.studio.text import Lang
from musegpt.tokenizer.base import Tokenizer

ENGLISH_MOST = 5  # an English word said this often within `checks.WORD_WINDOW` is not again


class HanTokens:
    """The tokens that hold or begin a Chinese word, looked for among a tokenizer's tokens
    with a Han character (`plan_rules.han_tokens`) and kept by word."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.han = han_tokens(tokenizer)
        self.found: dict[tuple[bool, str], list[int]] = {}

    def holding(self, word: str) -> list[int]:
        """The tokens whose text holds `word`."""
        key = (True, word)
        if key not in self.found:
            self.found[key] = [i for i, text in self.han if word in text]
        return self.found[key]

    def beginning(self, start: str) -> list[int]:
        """The tokens whose text begins with `start`."""
        key = (False, start)
        if key not in self.found:
            self.found[key] = [i for i, text in self.han if text.startswith(start)]
        return self.found[key]


_indexes: weakref.WeakKeyDictionary[Tokenizer, HanTokens] = weakref.WeakKeyDictionary()


def word_tokens(tokenizer: Tokenizer) -> HanTokens:
    """The `HanTokens` of `tokenizer`, kept for its next chapter."""
    index = _indexes.get(tokenizer)
    if index is None:
        index = _indexes[tokenizer] = HanTokens(tokenizer)
    return index


_english: weakref.WeakKeyDictionary[Tokenizer, dict[str, list[int]]] = weakref.WeakKeyDictionary()


def english_word_tokens(tokenizer: Tokenizer) -> dict[str, list[int]]:
    """The tokens that are a whole English word of four letters or more (with its space or
    without, any case), by the word's `checks.stem`: what writes a counted word. Once per
    tokenizer."""
    found = _english.get(tokenizer)
    if found is None:
        found = _english[tokenizer] = {}
        for i, text in enumerate(vocab_texts(tokenizer)):
            word = text[1:] if text.startswith(" ") else text
            if len(word) >= 4 and word.isascii() and word.isalpha():
                found.setdefault(checks.stem(word.lower()), []).append(i)
    return found


class WordGuard(RowBans):
    """Bans, for each row, the tokens that would write again a word `checks.overused_words`
    finds in `before` (the chapter so far) and the row's text, but those `spared` (the
    premise's words and the cast's names): a token holding the word, or completing it
    after its first characters."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        before: str,
        spared: Callable[[str], bool],
        lang: Lang = "zh",
    ) -> None:
        self.tokenizer, self.spared, self.lang = tokenizer, spared, lang
        self.window = checks.WORD_WINDOW[lang]
        self.before = before[-self.window :]
        self.index = word_tokens(tokenizer) if lang == "zh" else None
        self.english = english_word_tokens(tokenizer) if lang == "en" else {}

    def row_bans(self, state: DecodeState, row: int) -> list[int]:
        generated = state.generated(row)
        # A token is at least a character: the window's worth of newest tokens is enough.
        text = (self.before + self.tokenizer.decode(generated[-self.window :]))[-self.window :]
        if self.index is None:  # English: the tokens that write the word whole
            said = checks.overused_words(text, "en", self.spared, ENGLISH_MOST)
            return [token for stem in said for token in self.english.get(stem, [])]
        banned: list[int] = []
        for word in checks.overused_words(text, "zh", self.spared):
            banned += self.index.holding(word)
            for have in range(len(word) - 1, 0, -1):  # its first characters written
                if text.endswith(word[:have]):
                    banned += self.index.beginning(word[have:])
        return banned
