"""Cleaning documents and removing exact and near duplicates."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from enum import Enum
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

from musegpt.tokenizer.base import EOT

# The control characters (Unicode category Cc: C0, DEL and C1) except tab and newline.
# "\r" goes too, which turns Windows line ends into "\n".
_CONTROL: dict[int, None] = {
    cp: None for cp in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(cp) not in "\t\n"
}
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def clean_text(text: str) -> str:
    """NFC-normalised `text` without control characters, leading blank lines or trailing
    whitespace. The separator string is removed too: in a prepared corpus
    `<|endoftext|>` must only ever mean "a document ends here"."""
    text = unicodedata.normalize("NFC", text.translate(_CONTROL)).replace(EOT, "")
    return _LEADING_BLANK_LINES.sub("", text).rstrip()


class Verdict(Enum):
    KEEP = "keep"
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"


# MinHash settings. 64 permutations (not datasketch's default 128) halve the hashing and
# index cost, which matters for hundreds of thousands of documents, while still estimating
# Jaccard similarity to about +-0.06. Character 5-grams work for any script, Chinese included.
NUM_PERM = 64
SHINGLE_CHARS = 5
_SHINGLE_MULTIPLIER = np.uint32(0x01000193)  # FNV prime: spreads code points over 32 bits
_WHITESPACE = re.compile(r"\s+")


def shingle_hashes(text: str, n: int = SHINGLE_CHARS) -> list[int]:
    """32-bit hashes of the distinct character n-grams of `text` (case and runs of whitespace
    ignored). Computed with numpy over the whole text at once: hashing each n-gram string
    in Python is the slowest step of deduplication otherwise."""
    text = _WHITESPACE.sub(" ", text.lower()).strip()
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if len(codes) < n:  # a very short text is one shingle
        codes = np.concatenate([codes, np.zeros(n - len(codes), dtype=np.uint32)])
    count = len(codes) - n + 1
    hashes = np.zeros(count, dtype=np.uint32)
    for k in range(n):
        hashes = (hashes * _SHINGLE_MULTIPLIER) ^ codes[k : k + count]
    unique: list[int] = np.unique(hashes).tolist()
    return unique


def _identity(value: Any) -> Any:
    return value  # shingles arrive already hashed


class Deduplicator:
    """Remembers the documents kept so far and judges each new one.

    Exact duplicates are found by a hash of the text; near duplicates by MinHash LSH over
    character shingles, confirmed by the estimated Jaccard similarity (LSH alone only
    proposes candidates). `near_threshold=None` (or 0) turns near-duplicate removal off.
    """

    def __init__(self, near_threshold: float | None = 0.8, num_perm: int = NUM_PERM) -> None:
        if near_threshold is not None and not 0.0 <= near_threshold <= 1.0:
            raise ValueError(f"dedup threshold must be between 0 and 1, got {near_threshold}")
        self._seen: set[bytes] = set()
        self._threshold = near_threshold or None
        self._template = MinHash(num_perm=num_perm, seed=1, hashfunc=_identity)
        self._lsh = (
            MinHashLSH(threshold=self._threshold, num_perm=num_perm) if self._threshold else None
        )
        self._signatures: list[np.ndarray[Any, np.dtype[np.uint32]]] = []

    def check(self, text: str) -> Verdict:
        """KEEP (and remember `text`), or which kind of duplicate it is."""
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if digest in self._seen:
            return Verdict.EXACT_DUPLICATE
        if self._lsh is not None and self._is_near_duplicate(text):
            return Verdict.NEAR_DUPLICATE
        self._seen.add(digest)
        return Verdict.KEEP

    def _is_near_duplicate(self, text: str) -> bool:
        assert self._lsh is not None and self._threshold is not None
        minhash = self._template.copy()
        minhash.update_batch(shingle_hashes(text))
        signature = minhash.digest()
        for key in self._lsh.query(minhash):
            if np.mean(self._signatures[key] == signature) >= self._threshold:
                return True
        self._lsh.insert(len(self._signatures), minhash, check_duplication=False)
        self._signatures.append(signature)
        return False
