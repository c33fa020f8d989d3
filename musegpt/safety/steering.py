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


@lru_cache(maxsize=1)
def steering_patterns() -> tuple[str, ...]:
    """The `banned_regex` entries that keep flagged words out of generated text."""
    import opencc

    en = lexicon("en")
    words = {k.strip() for k in en.of_kind(*STEERED_KINDS)}
    words |= {p.lower() for p in _rule_phrases("en")}
    # Words are whole words (never inside another: "cocktail"), separated by any spaces, and
    # matched only once the next character shows the word has ended.
    body = _trie_regex(sorted(words))
    en_pattern = rf"(?i)(?<![a-z0-9]){body}(?=[^a-z0-9'])"
    zh = lexicon("zh")
    allowed = zh.allow
    to_traditional = opencc.OpenCC("s2t")
    han = {k for k in zh.of_kind(*STEERED_KINDS) if not any(k in a for a in allowed)}
    han |= set(_rule_phrases("zh"))
    han |= {to_traditional.convert(w) for w in han}
    zh_pattern = "(?i)" + _trie_regex(sorted(han))
    return (en_pattern, zh_pattern)
