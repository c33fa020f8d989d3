"""Caption expansion: a request's words mapped to the names and tags the image model learnt.

An image model only knows the captions it was trained on: emoji names ("red apple", "红苹果")
and, for a model trained with `--tags`, their tags ("fruit red apple"). A request in other
words ("a shiny apple from the orchard", "一个红苹果") is matched to the training concepts
whose names and tags share the most of its words (English: lower-cased Snowball stems;
Chinese: character pairs), weighted by how rare each word is among the
concepts (TF-IDF, cosine similarity), and the model is given the best concept's name or tags
instead, in the caption's language: DALL-E 3's prompt upsampling, with the model's own
training vocabulary instead of a language model's rewriting. Only the training split's
names and tags are used (stored in the model file); never the evaluation's groups.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Literal

CONCEPTS_KEY = "image_concepts"  # model-file metadata: the training split's names and tags
EXPAND_KEY = "image_expand"  # model-file metadata: the expansion the model draws with
ExpandMode = Literal["off", "name", "tags"]
EXPAND_MODES: tuple[ExpandMode, ...] = ("off", "name", "tags")
TAG_WORDS = 3  # as many tags as a training tag caption has
MIN_SCORE = 0.15  # below this cosine similarity no concept is close enough: draw as written
NAME_WEIGHT = 2  # a concept's name counts twice its tags

WORD = re.compile(r"[a-z0-9]+")
HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
# Words that say nothing about what to draw (Chinese: a lone numeral, measure word or
# particle).
ENGLISH_STOP = frozenset(
    WORD.findall(
        "a an the of with and or in on at to for from by is are be this that it its some one "
        "two picture image drawing icon emoji"
    )
)
CHINESE_STOP = frozenset("一两个只的了是和在张幅图")


def is_chinese(text: str) -> bool:
    return HAN.search(text) is not None


@dataclass(frozen=True)
class Concept:
    """One thing the training split shows (an emoji, whichever sets drew it)."""

    key: str
    en: str
    zh: str
    tags_en: tuple[str, ...] = ()
    tags_zh: tuple[str, ...] = ()

    def name(self, chinese: bool) -> str:
        return (self.zh if chinese else self.en) or self.en or self.zh

    def tags(self, chinese: bool) -> str:
        """Up to TAG_WORDS tags in a tag caption's format: English joined by spaces, Chinese
        run together (falls back to the name when the concept has no tags)."""
        tags = self.tags_zh if chinese else self.tags_en

        def order(tag: str) -> bytes:
            return hashlib.blake2b(f"{self.key}/{tag}".encode()).digest()

        chosen = sorted(dict.fromkeys(tags), key=order)[:TAG_WORDS]
        return ("" if chinese else " ").join(chosen) or self.name(chinese)


@dataclass(frozen=True)
class Expansion:
    """What the model is given for a caption, and why."""

    caption: str  # the caption the model reads
    concept: Concept | None  # the training concept it was matched to (None: as written)
    score: float  # cosine similarity of the match (0: no match)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    from snowballstemmer import stemmer

    return stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """An English word's Snowball stem ("laughing" -> "laugh"), remembered: the stemmer is
    pure Python and the concepts repeat their words."""
    return str(_stemmer().stemWord(word))


def english_terms(text: str) -> list[str]:
    return [stem(w) for w in WORD.findall(text.lower()) if w not in ENGLISH_STOP]


def chinese_terms(text: str) -> list[str]:
    """Character pairs; a lone character only when it stands alone (狗). Single characters of
    longer words mislead: 羊 in 母羊 (ewe) would match 白羊座 (Aries)."""
    terms = []
    for run in HAN.findall(text):
        if len(run) == 1 and run not in CHINESE_STOP:
            terms.append(run)
        terms += [run[i : i + 2] for i in range(len(run) - 1)]
    return terms


def terms(text: str) -> list[str]:
    """A caption's matching terms: English stems, Chinese characters and character pairs."""
    return english_terms(text) + chinese_terms(text)


class ConceptVocabulary:
    """The training split's concepts, searchable by a caption's words."""

    def __init__(self, concepts: Sequence[Concept]) -> None:
        if not concepts:
            raise ValueError("a concept vocabulary needs at least one concept")
        self.concepts = list(concepts)

    def __len__(self) -> int:
        return len(self.concepts)

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]]) -> ConceptVocabulary:
        """Concepts from picture rows (`images.jsonl`'s fields) of the training split only: one
        per emoji (`id` less the `set` it starts with), else one per caption."""
        concepts: dict[str, Concept] = {}
        for row in rows:
            if (row.get("split") or "train") != "train":
                continue
            en, zh = row.get("caption_en") or "", row.get("caption_zh") or ""
            # the emoji, whichever set drew it: the id less its set's name
            key = str(row.get("id") or "").removeprefix(f"{row.get('set') or ''}-") or en or zh
            if key and (en or zh) and key not in concepts:
                concepts[key] = Concept(
                    key, en, zh, tuple(row.get("tags_en") or ()), tuple(row.get("tags_zh") or ())
                )
        return cls(list(concepts.values()))

    # ------------------------------------------------------------------ storage

    def to_metadata(self) -> str:
        """Compact text for a model file's metadata (zlib-compressed JSON, base64)."""
        rows = [[c.key, c.en, c.zh, list(c.tags_en), list(c.tags_zh)] for c in self.concepts]
        packed = zlib.compress(json.dumps(rows, ensure_ascii=False).encode(), 9)
        return base64.b64encode(packed).decode("ascii")

    @classmethod
    def from_metadata(cls, text: str) -> ConceptVocabulary:
        rows = json.loads(zlib.decompress(base64.b64decode(text)))
        return cls([Concept(k, en, zh, tuple(te), tuple(tz)) for k, en, zh, te, tz in rows])

    # ------------------------------------------------------------------ matching

    @cached_property
    def _index(self) -> dict[str, list[tuple[int, float]]]:
        """term -> [(concept, weight)]: TF-IDF weights (sublinear term frequency, smoothed
        inverse document frequency, unit length per concept, as scikit-learn's
        TfidfVectorizer). Written out because importing scikit-learn's text module costs
        seconds at the first drawing, and this is a dozen lines (50 ms for 1,700 concepts)."""
        documents = [
            Counter(
                [*terms(f"{c.en} {c.zh}") * NAME_WEIGHT, *terms(" ".join(c.tags_en + c.tags_zh))]
            )
            for c in self.concepts
        ]
        frequency = Counter(term for document in documents for term in document)
        idf = {t: math.log((1 + len(documents)) / (1 + df)) + 1 for t, df in frequency.items()}
        index: dict[str, list[tuple[int, float]]] = {}
        for number, document in enumerate(documents):
            weights = {t: (1 + math.log(tf)) * idf[t] for t, tf in document.items()}
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            for term, weight in weights.items():
                index.setdefault(term, []).append((number, weight / norm))
        return index

    def match(self, caption: str, limit: int = 5) -> list[tuple[Concept, float]]:
        """The `limit` concepts most like `caption` (cosine similarity of TF-IDF vectors),
        best first, with their similarity."""
        index = self._index
        query = {t: 1 + math.log(tf) for t, tf in Counter(terms(caption)).items() if t in index}
        # the query's idf: each term's weight in a one-term concept is its idf over the norm
        weights = {t: tf * self._idf(t) for t, tf in query.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        scores: dict[int, float] = {}
        for term, weight in weights.items():
            for number, concept_weight in index[term]:
                scores[number] = scores.get(number, 0.0) + weight / norm * concept_weight
        best = sorted(scores.items(), key=lambda item: -item[1])[:limit]
        return [(self.concepts[n], score) for n, score in best]

    def _idf(self, term: str) -> float:
        return math.log((1 + len(self.concepts)) / (1 + len(self._index[term]))) + 1

    def expand(self, caption: str, mode: ExpandMode = "name") -> Expansion:
        """The caption the model should read for `caption`: the best concept's name or tags
        in the caption's language, or the caption as written when nothing is close."""
        if mode == "off":
            return Expansion(caption, None, 0.0)
        found = self.match(caption, limit=1)
        if not found or found[0][1] < MIN_SCORE:
            return Expansion(caption, None, found[0][1] if found else 0.0)
        concept, score = found[0]
        chinese = is_chinese(caption)
        text = concept.name(chinese) if mode == "name" else concept.tags(chinese)
        return Expansion(text, concept, score)


def expand_mode(value: str) -> ExpandMode:
    """A stored or requested mode, checked."""
    for mode in EXPAND_MODES:
        if value == mode:
            return mode
    raise ValueError(
        f"unknown caption expansion {value!r}; choose one of {', '.join(EXPAND_MODES)}"
    )
