"""Offline moderation of English and Chinese text in OpenAI's categories.

One Aho-Corasick automaton (pyahocorasick) per language finds, in one pass over the
normalised text, every word-list term (lexicon.py), every phrase of the rules (rules.yaml)
and every allowed string that undoes a match. English text is also scored by
alt-profanity-check's bundled classifier (a linear model over character n-grams, trained on
offensive tweets), which counts towards harassment only where the word lists found
profanity too: on its own it also scores grief and war poems as offensive."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

from musegpt.safety.categories import CATEGORIES, FLAG_AT, SCORED, UNSCORED
from musegpt.safety.lexicon import DATA, LANGS, Kind, Lang, key, lexicon, normalise
from musegpt.safety.rules import expand_all

STRONG = 0.9  # a term or rule that settles a category on its own
ADDRESSED = 0.8  # profanity or a slur in a text addressed to someone: harassment
UNADDRESSED = 0.4  # profanity alone: counted, not flagged ("the damn rain")
WEAK = 0.3  # one suggestive term; two flag sexual
MAX_HITS = 8  # hits kept per near rule (they explain; one is enough to fire)
CLASSIFIER_MIN = 0.5  # the English classifier's probability that counts as harassment
ADDRESS: dict[Lang, tuple[str, ...]] = {
    "en": ("you", "your", "yourself", "yours", "u", "ur", "ya", "you're", "youre", "y'all"),
    "zh": ("你", "妳", "您"),
}


@dataclass(frozen=True)
class Rule:
    name: str
    scores: dict[str, float]
    needs: tuple[str, ...] = ()
    window: int = 0  # characters between `first` and `then` (near rules)


@dataclass(frozen=True)
class Hit:
    """What fired: a term's kind or a rule's name, and the text it matched (normalised)."""

    source: str
    text: str


@dataclass(frozen=True)
class Moderation:
    """One input's result, in OpenAI's terms, with the hits that explain it."""

    category_scores: dict[str, float]
    hits: tuple[Hit, ...] = ()

    @property
    def categories(self) -> dict[str, bool]:
        return {c: s >= FLAG_AT for c, s in self.category_scores.items()}

    @property
    def flagged(self) -> bool:
        return any(self.categories.values())

    @property
    def flagged_categories(self) -> list[str]:
        return [c for c, on in self.categories.items() if on]

    def openai(self) -> dict[str, Any]:
        """One entry of OpenAI's `results`."""
        return {
            "flagged": self.flagged,
            "categories": self.categories,
            "category_scores": self.category_scores,
            "category_applied_input_types": {
                c: [] if c in UNSCORED else ["text"] for c in CATEGORIES
            },
        }


@dataclass
class _Found:
    spans: dict[tuple[str, str], list[tuple[int, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )


class _Language:
    """The automaton and rules of one language."""

    def __init__(self, lang: Lang) -> None:
        import ahocorasick

        self.lang = lang
        self.lexicon = lexicon(lang)
        spec = yaml.safe_load((DATA / "rules.yaml").read_text("utf-8"))[lang]
        slots: dict[str, list[str]] = {k: [str(v) for v in vs] for k, vs in spec["slots"].items()}
        self.rules: list[Rule] = []
        roles: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for k, kind in self.lexicon.terms.items():
            roles[k].append(("term", kind))
        for k in self.lexicon.allow:
            roles[k].append(("allow", ""))
        for word in ADDRESS[lang]:
            roles[key(word, lang)].append(("address", ""))
        for raw in spec["rules"]:
            rule = Rule(
                raw["name"],
                {str(c): float(s) for c, s in raw["scores"].items()},
                tuple(raw.get("needs", ())),
                int(raw["near"][2]) if "near" in raw else 0,
            )
            unknown = [c for c in [*rule.scores, *rule.needs] if c not in SCORED]
            if unknown:
                raise ValueError(f"rules.yaml: rule {rule.name} names unknown categories {unknown}")
            self.rules.append(rule)
            parts = (
                {"phrase": raw["phrases"]}
                if "phrases" in raw
                else {
                    "first": raw["near"][0],
                    "then": raw["near"][1],
                }
            )
            for part, templates in parts.items():
                for phrase in expand_all([str(t) for t in templates], slots):
                    k = key(phrase, lang)
                    if k.strip():
                        roles[k].append((rule.name, part))
        self.automaton = ahocorasick.Automaton()
        for k, r in roles.items():
            self.automaton.add_word(k, (len(k), tuple(r)))
        self.automaton.make_automaton()

    def find(self, text: str) -> _Found:
        """Every role's match spans in normalised `text`, allowed strings applied."""
        raw: list[tuple[int, int, tuple[tuple[str, str], ...]]] = []
        allowed: list[tuple[int, int]] = []
        for end, (length, roles) in self.automaton.iter(text):
            start, stop = end + 1 - length, end + 1
            if self.lang == "en":  # the padding spaces are not part of the match
                start, stop = start + 1, stop - 1
            if any(role == "allow" for role, _ in roles):
                allowed.append((start, stop))
            raw.append((start, stop, roles))
        found = _Found()
        for start, stop, roles in raw:
            undone = any(a < stop <= b and (a, b) != (start, stop) for a, b in allowed)
            for role in roles:
                if role[0] != "allow" and not undone:
                    found.spans[role].append((start, stop))
        return found

    def score(self, text: str, classifier: float | None) -> Moderation:
        norm = normalise(text, self.lang)
        found = self.find(norm)
        scores = dict.fromkeys(SCORED, 0.0)
        hits: list[Hit] = []

        def raise_to(category: str, value: float) -> None:
            scores[category] = max(scores[category], value)

        def spans(role: str, part: str) -> list[tuple[int, int]]:
            return found.spans.get((role, part), [])

        def matched(role: str, part: str) -> list[str]:
            return sorted({norm[a:b] for a, b in spans(role, part)})

        addressed = bool(spans("address", ""))
        kinds: dict[Kind, list[str]] = {
            kind: matched("term", kind) for kind in ("profanity", "hate", "sexual", "sexual-weak")
        }
        for kind, words in kinds.items():
            hits += [Hit(kind, w) for w in words]
        if kinds["hate"]:
            raise_to("hate", STRONG)
        if kinds["profanity"] or kinds["hate"]:
            raise_to("harassment", ADDRESSED if addressed else UNADDRESSED)
            if classifier is not None and classifier >= CLASSIFIER_MIN:
                raise_to("harassment", round(classifier, 4))
        if kinds["sexual"]:
            raise_to("sexual", STRONG)
        raise_to("sexual", min(STRONG, WEAK * len(kinds["sexual-weak"])))
        for rule in sorted(self.rules, key=lambda r: bool(r.needs)):  # `needs` rules last
            if any(scores[c] < FLAG_AT for c in rule.needs):
                continue
            if rule.window:
                fired = _near(
                    norm, spans(rule.name, "first"), spans(rule.name, "then"), rule.window
                )
            else:
                fired = matched(rule.name, "phrase")
            if fired:
                hits += [Hit(rule.name, f) for f in fired]
                for category, value in rule.scores.items():
                    raise_to(category, value)
        full = {c: round(scores.get(c, 0.0), 4) for c in CATEGORIES}
        return Moderation(full, tuple(hits))


def _near(
    text: str, first: list[tuple[int, int]], then: list[tuple[int, int]], window: int
) -> list[str]:
    """The spans from a `first` match to a `then` match that starts at most `window`
    characters after it ends (by binary search: a long text full of 我 stays linear)."""
    ends = sorted((b, a) for a, b in first)
    keys = [b for b, _ in ends]
    found: set[str] = set()
    for c, d in then:
        i = bisect.bisect_right(keys, c + 1)  # first matches ending by then's start (+1 overlap)
        if i and c - keys[i - 1] <= window:
            found.add(text[ends[i - 1][1] : d])
            if len(found) >= MAX_HITS:
                break
    return sorted(found)


def _merge(results: Sequence[Moderation]) -> Moderation:
    scores = {c: max(r.category_scores[c] for r in results) for c in CATEGORIES}
    return Moderation(scores, tuple(h for r in results for h in r.hits))


class Moderator:
    """Scores texts in both languages (each text is read as English and as Chinese; the
    higher score of each category counts, so mixed text is covered)."""

    def __init__(self, use_classifier: bool = True) -> None:
        self.languages = {lang: _Language(lang) for lang in LANGS}
        self.use_classifier = use_classifier

    def moderate(self, texts: Sequence[str]) -> list[Moderation]:
        probs = self._classifier(texts)
        return [
            _merge(
                [self.languages[lang].score(text, prob if lang == "en" else None) for lang in LANGS]
            )
            for text, prob in zip(texts, probs, strict=True)
        ]

    def moderate_one(self, text: str) -> Moderation:
        return self.moderate([text])[0]

    def _classifier(self, texts: Sequence[str]) -> list[float | None]:
        """alt-profanity-check's probability for texts with Latin letters (None otherwise)."""
        latin = [i for i, t in enumerate(texts) if any("a" <= ch.lower() <= "z" for ch in t)]
        out: list[float | None] = [None] * len(texts)
        if not self.use_classifier or not latin:
            return out
        predict_prob = _profanity_model()
        for i, p in zip(latin, predict_prob([texts[i] for i in latin]), strict=True):
            out[i] = float(p)
        return out


_lock = threading.Lock()


@lru_cache(maxsize=1)
def _profanity_model() -> Any:
    try:
        from profanity_check import predict_prob
    except ImportError as err:
        raise RuntimeError(
            "alt-profanity-check is not installed: pip install -e . installs it"
        ) from err
    return predict_prob


def moderator() -> Moderator:
    """The shared moderator (built once: reading the lists takes about a second)."""
    with _lock:
        return _shared()


@lru_cache(maxsize=1)
def _shared() -> Moderator:
    return Moderator()


def moderate(texts: str | Sequence[str]) -> list[Moderation]:
    """Moderation results for a text or a list of texts."""
    return moderator().moderate([texts] if isinstance(texts, str) else list(texts))
