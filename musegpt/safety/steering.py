"""What `--moderation block` steers generation away from, as `banned_regex` patterns for
the decoder's banned-phrase backtracking: every slur, explicit sexual term and profanity of
the word lists, and the threat phrases of the rules, in English and in Chinese (simplified
and traditional). Each list becomes one regex shaped as a trie, so checking a new token
costs one pass over the text not yet streamed, however many terms there are."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import yaml

from musegpt.safety.lexicon import DATA, Kind, Lang, lexicon
from musegpt.safety.rules import expand_all

STEERED_KINDS: tuple[Kind, ...] = ("hate", "sexual", "profanity")
STEERED_RULES = ("threat", "telling-to-self-harm")


def _char(ch: str) -> str:
    """One character of a term as a pattern: any run of spaces for a space, either
    apostrophe for one."""
    return {" ": r"\s+", "'": "['\u2019]"}.get(ch, re.escape(ch))


def _trie_regex(words: Iterable[str]) -> str:
    """An alternation of `words` factored by common prefixes (a|ab|ac -> a(?:b|c)?)."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def render(node: dict[str, Any]) -> str:
        ends = "" in node
        branches = [_char(ch) + render(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:
            return f"(?:{body})?"
        return body

    return render(trie)


def _rule_phrases(lang: Lang) -> list[str]:
    spec = yaml.safe_load((DATA / "rules.yaml").read_text("utf-8"))[lang]
    slots = {k: [str(v) for v in vs] for k, vs in spec["slots"].items()}
    phrases: list[str] = []
    for rule in spec["rules"]:
        if rule["name"] in STEERED_RULES and "phrases" in rule:
            phrases += expand_all([str(t) for t in rule["phrases"]], slots)
    return phrases


def term_patterns(en_words: Iterable[str], zh_words: Iterable[str]) -> tuple[str, str]:
    """`banned_regex` entries for English and Chinese terms: English ones as whole words,
    separated by any spaces and matched only once the next character shows the word has
    ended ("cocktail" holds no term, nor "analysis" while it is written as "anal" and
    "ysis"); Chinese ones in simplified and traditional spelling."""
    import opencc

    body = _trie_regex(sorted({w.strip().lower() for w in en_words}))
    en_pattern = rf"(?i)(?<![a-z0-9]){body}(?=[^a-z0-9'])"
    to_traditional = opencc.OpenCC("s2t")
    han = set(zh_words)
    han |= {to_traditional.convert(w) for w in han}
    return en_pattern, "(?i)" + _trie_regex(sorted(han))


@lru_cache(maxsize=1)
def steering_patterns() -> tuple[str, ...]:
    """The `banned_regex` entries that keep flagged words out of generated text."""
    en = lexicon("en")
    words = {k.strip() for k in en.of_kind(*STEERED_KINDS)}
    words |= {p.lower() for p in _rule_phrases("en")}
    zh = lexicon("zh")
    han = {k for k in zh.of_kind(*STEERED_KINDS) if not any(k in a for a in zh.allow)}
    han |= set(_rule_phrases("zh"))
    return term_patterns(words, han)


@lru_cache(maxsize=1)
def unasked_terms() -> tuple[re.Pattern[str], ...]:
    """Sexual terms, explicit (the word lists' *sexual* kind) and plain (sex, rape, 强奸:
    `data/unasked.yaml`), as patterns, English then Chinese."""
    spec: dict[str, list[str]] = yaml.safe_load((DATA / "unasked.yaml").read_text("utf-8"))
    en = {k.strip() for k in lexicon("en").of_kind("sexual")} | set(spec["en"])
    zh = {k for k in lexicon("zh").of_kind("sexual")} | set(spec["zh"])
    return tuple(re.compile(p) for p in term_patterns(en, zh))


def unasked_patterns(brief: str) -> list[str]:
    """`banned_regex` entries that keep sexual terms out of what the studio writes for
    `brief` (a premise, a topic, a text to rewrite), unless `brief` holds one itself: a
    small base model drifts into them unasked (seen: "被强奸" in the bible of "a robot who
    discovers love"), and a writer who wants the subject names it."""
    patterns = unasked_terms()
    if any(p.search(brief + " ") for p in patterns):
        return []
    return [p.pattern for p in patterns]
