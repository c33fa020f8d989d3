"""Measures of what an adapted model writes: the share of ordinary English words (Debian's
`wamerican` list, not the CMU dictionary, which accepts rare names and fragments) and
repeated lines."""

from __future__ import annotations

import functools
import re
from pathlib import Path

WORD_LIST = Path("/usr/share/dict/words")  # Debian's wamerican (also on most Unix systems)
ENGLISH_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")


class WordListMissing(FileNotFoundError):
    pass


@functools.lru_cache(maxsize=1)
def english_words(path: Path = WORD_LIST) -> frozenset[str]:
    """The word list, lower-cased (it holds inflections and possessives: "beauty's")."""
    if not path.is_file():
        raise WordListMissing(
            f"{path} is missing: the real-word share needs a standard English word list "
            "(Debian/Ubuntu: apt-get install wamerican)"
        )
    return frozenset(w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines())


def english_word_tokens(text: str) -> list[str]:
    return [w.replace("’", "'") for w in ENGLISH_WORD.findall(text)]


def real_word_share(text: str, words: frozenset[str] | None = None) -> float:
    """The share of `text`'s English words found in the word list (1.0 for no words)."""
    known = english_words() if words is None else words
    tokens = english_word_tokens(text)
    if not tokens:
        return 1.0
    return sum(t.lower() in known for t in tokens) / len(tokens)


def unknown_words(text: str, words: frozenset[str] | None = None) -> list[str]:
    known = english_words() if words is None else words
    return [t for t in english_word_tokens(text) if t.lower() not in known]


def repeated_lines(text: str) -> int:
    """Lines that repeat an earlier line of the text (case and outer spaces ignored)."""
    lines = [line.strip().lower() for line in text.splitlines() if line.strip()]
    return len(lines) - len(set(lines))
