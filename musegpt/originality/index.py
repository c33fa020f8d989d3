"""A suffix-array index of a training corpus's token ids: which spans of a text (or of a
text being written) occur verbatim in the corpus, and where.

The corpus is one array of token ids, documents each followed by the end-of-text token
(the layout `musegpt prepare` writes); its suffix array (`pydivsufsort`) lists every
position in the order of the suffix starting there. All suffixes that begin with a given
span then lie in one interval of that list (`Interval`), found by binary search, and the
tokens that follow the span in the corpus are read off the interval's suffixes — what the
originality guard bans once a copied span has reached its limit.

An index is a folder: `tokens.npy`, `suffixes.npy`, `documents.npy` (where each document
starts) and `index.json` (what was indexed, with which tokenizer). It is stored beside the
corpus it indexes (`originality/` in a prepared corpus's folder).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musegpt.fileio import atomic_write_text

FORMAT = "musegpt-copy-index-2"
META = "index.json"
GATHER_LIMIT = 4096  # intervals up to this wide are searched with one vectorised gather

IntArray = np.ndarray[Any, np.dtype[np.integer[Any]]]


class CopyIndexError(ValueError):
    """An index folder that is missing, damaged, or made for another tokenizer."""


@dataclass(frozen=True)
class Interval:
    """The suffixes (positions `suffixes[lo:hi]`) that begin with a span of `depth` tokens."""

    lo: int
    hi: int
    depth: int

    @property
    def count(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class Span:
    """A span of a text found in the corpus: `length` tokens from token `start` of the text,
    at corpus position `position`."""

    start: int
    length: int
    position: int
    occurrences: int = 1  # how often the span occurs in the corpus


class CopyIndex:
    """The suffix array of a corpus's token ids and where its documents start."""

    def __init__(
        self, tokens: IntArray, suffixes: IntArray, documents: IntArray, meta: dict[str, Any]
    ) -> None:
        self.tokens = tokens
        self.suffixes = suffixes
        self.documents = documents
        self.meta = meta
        self.eot_id = int(meta["eot_id"])
        self.size = int(tokens.shape[0])
        self._pairs: tuple[IntArray, IntArray, int] | None = None

    def _pair_table(self) -> tuple[IntArray, IntArray, int]:
        """Where the suffixes beginning with each pair of tokens start (the suffix array is
        sorted by its first two tokens too): the distinct pair keys, sorted, each one's
        first suffix (plus the end), and the key's radix. Built on first use, in one pass;
        it lets a search begin in the pair's short interval instead of the whole array."""
        if self._pairs is None:
            radix = int(self.tokens.max()) + 2 if self.size else 2
            first = self.tokens[self.suffixes].astype(np.int64)
            second = self._next_tokens(0, self.size, 1) + 1  # 0: the corpus ends there
            keys = first * radix + second
            distinct, starts = np.unique(keys, return_index=True)
            self._pairs = (distinct, np.append(starts, self.size), radix)
        return self._pairs

    def _start(self, span: Sequence[int]) -> Interval:
        """The interval of the span's first two tokens (one, for a span of one)."""
        keys, starts, radix = self._pair_table()
        if max(span[:2]) >= radix - 1:  # a token the corpus never holds
            return Interval(0, 0, min(len(span), 2))
        if len(span) == 1:
            lo = int(np.searchsorted(keys, span[0] * radix, side="left"))
            hi = int(np.searchsorted(keys, (span[0] + 1) * radix, side="left"))
            return Interval(int(starts[lo]), int(starts[hi]), 1)
        key = span[0] * radix + span[1] + 1
        at = int(np.searchsorted(keys, key))
        if at == len(keys) or int(keys[at]) != key:
            return Interval(0, 0, 2)
        return Interval(int(starts[at]), int(starts[at + 1]), 2)

    # -- building and storing -------------------------------------------------------------

    @classmethod
    def build(cls, tokens: IntArray, eot_id: int, meta: dict[str, Any]) -> CopyIndex:
        """Index `tokens` (documents each ended by `eot_id`)."""
        from pydivsufsort import divsufsort

        # divsufsort reads uint8/16/32/64 arrays; the smallest that holds the ids is fastest.
        width = np.uint16 if tokens.size == 0 or int(tokens.max()) < 2**16 else np.uint32
        array: IntArray = np.ascontiguousarray(tokens, dtype=width)
        suffixes = divsufsort(array) if array.size else np.empty(0, dtype=np.int64)
        ends = np.flatnonzero(array == eot_id)
        starts = np.concatenate([[0], ends + 1])
        documents = starts[starts < array.size] if array.size else np.zeros(1, dtype=np.int64)
        full = {**meta, "format": FORMAT, "eot_id": int(eot_id), "tokens": int(array.size)}
        return cls(array, np.asarray(suffixes, dtype=np.int64), documents, full)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in self._arrays().items():
            tmp = folder / f".{name}.tmp.npy"
            np.save(tmp, array)
            tmp.replace(folder / f"{name}.npy")
        # The metadata goes last: a folder without it is not an index (an interrupted save).
        atomic_write_text(folder / META, json.dumps(self.meta, indent=2, ensure_ascii=False))

    def _arrays(self) -> dict[str, IntArray]:
        keys, starts, radix = self._pair_table()  # saved too: it takes seconds to build
        self.meta["pair_radix"] = radix
        return {
            "tokens": self.tokens,
            "suffixes": self.suffixes,
            "documents": self.documents,
            "pair_keys": keys,
            "pair_starts": starts,
        }

    @classmethod
    def load(cls, folder: Path) -> CopyIndex:
        meta_file = folder / META
        if not meta_file.is_file():
            raise CopyIndexError(
                f"{folder} holds no originality index (no {META}); build one with "
                "`musegpt originality index`"
            )
        again = "build it again with `musegpt originality index`"
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                raise CopyIndexError(
                    f"the originality index in {folder} has format {meta.get('format')!r}, "
                    f"not {FORMAT!r}; {again}"
                )
            arrays = {name: np.load(folder / f"{name}.npy") for name in cls._names()}
            radix = int(meta["pair_radix"])
        except (OSError, ValueError, KeyError) as err:
            if isinstance(err, CopyIndexError):
                raise
            damaged = f"the originality index in {folder} is damaged ({err}); {again}"
            raise CopyIndexError(damaged) from None
        index = cls(arrays["tokens"], arrays["suffixes"], arrays["documents"], meta)
        index._pairs = (arrays["pair_keys"], arrays["pair_starts"], radix)
        return index

    @staticmethod
    def _names() -> tuple[str, ...]:
        return ("tokens", "suffixes", "documents", "pair_keys", "pair_starts")

    # -- searching ------------------------------------------------------------------------

    def everything(self) -> Interval:
        """The interval of the empty span: every suffix."""
        return Interval(0, self.size, 0)

    def find(self, span: Sequence[int]) -> Interval:
        """The suffixes that begin with `span` (an empty interval when it never occurs)."""
        pattern = list(span)
        width = len(pattern)
        tokens, suffixes = self.tokens, self.suffixes
        if not width:
            return self.everything()
        begun = self._start(pattern)
        if width <= 2 or not begun.count:
            return begun

        def prefix(i: int) -> list[int]:
            start = int(suffixes[i])
            found: list[int] = tokens[start : start + width].tolist()
            return found

        lo, hi = begun.lo, begun.hi
        end = hi
        while lo < hi:  # first suffix whose prefix is >= the span
            mid = (lo + hi) // 2
            if prefix(mid) < pattern:
                lo = mid + 1
            else:
                hi = mid
        first, hi = lo, end
        while lo < hi:  # first suffix whose prefix is > the span
            mid = (lo + hi) // 2
            if prefix(mid) <= pattern:
                lo = mid + 1
            else:
                hi = mid
        return Interval(first, lo, width)

    def _next_tokens(self, lo: int, hi: int, depth: int) -> IntArray:
        """The token at offset `depth` of each suffix in [lo, hi); -1 past the corpus's end."""
        at = self.suffixes[lo:hi] + depth
        inside = at < self.size
        found = np.full(at.shape, -1, dtype=np.int64)
        found[inside] = self.tokens[at[inside]]
        return found

    def _next_token(self, i: int, depth: int) -> int:
        at = int(self.suffixes[i]) + depth
        return int(self.tokens[at]) if at < self.size else -1

    def extend(self, interval: Interval, token: int) -> Interval:
        """The interval of the span followed by `token` (within the span's own interval,
        where the next tokens are sorted)."""
        lo, hi, depth = interval.lo, interval.hi, interval.depth
        if depth < 2 and hi - lo > GATHER_LIMIT:  # the whole corpus, or one token's suffixes
            start = self.suffixes[lo]
            return self._start([*self.tokens[start : start + depth].tolist(), token])
        if hi - lo <= GATHER_LIMIT:
            following = self._next_tokens(lo, hi, depth)
            left = int(np.searchsorted(following, token, side="left"))
            right = int(np.searchsorted(following, token, side="right"))
            return Interval(lo + left, lo + right, depth + 1)
        a, b = lo, hi
        while a < b:
            mid = (a + b) // 2
            if self._next_token(mid, depth) < token:
                a = mid + 1
            else:
                b = mid
        first, b = a, hi
        while a < b:
            mid = (a + b) // 2
            if self._next_token(mid, depth) <= token:
                a = mid + 1
            else:
                b = mid
        return Interval(first, a, depth + 1)

    def followers(self, interval: Interval) -> IntArray:
        """The distinct tokens that follow the span in the corpus (not the end of text)."""
        following = np.unique(self._next_tokens(interval.lo, interval.hi, interval.depth))
        kept: IntArray = following[(following >= 0) & (following != self.eot_id)]
        return kept

    def longest_suffix(self, ids: Sequence[int], limit: int) -> Interval:
        """The longest span at most `limit` long that ends `ids` and occurs in the corpus."""
        for length in range(min(limit, len(ids)), 0, -1):
            found = self.find(ids[len(ids) - length :])
            if found.count:
                return found
        return self.everything()

    def longest_span(self, ids: Sequence[int]) -> Span | None:
        """The longest span of `ids` that occurs in the corpus (the first of equals), with
        matching statistics: for each start, the span is extended while it still occurs,
        and the next start begins from one token less (a suffix of a found span is found)."""
        best: Span | None = None
        length = 0
        for start in range(len(ids)):
            length = max(length - 1, 0)
            interval = self.find(ids[start : start + length]) if length else self.everything()
            while start + length < len(ids):
                longer = self.extend(interval, ids[start + length])
                if not longer.count or ids[start + length] == self.eot_id:
                    break
                interval, length = longer, length + 1
            if length and (best is None or length > best.length):
                position = int(self.suffixes[interval.lo])
                best = Span(start, length, position, interval.count)
        return best

    # -- provenance -----------------------------------------------------------------------

    def document_of(self, position: int) -> tuple[int, int]:
        """(document number, first corpus position of that document) for a corpus position."""
        number = int(np.searchsorted(self.documents, position, side="right")) - 1
        return number, int(self.documents[number])

    def document_tokens(self, number: int) -> IntArray:
        start = int(self.documents[number])
        ends = np.flatnonzero(self.tokens[start:] == self.eot_id)
        stop = start + int(ends[0]) if ends.size else self.size
        return self.tokens[start:stop]
