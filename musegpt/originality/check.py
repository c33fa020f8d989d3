"""`musegpt originality check`: how much of a text comes verbatim from a training corpus.

Three measures:
* the longest span shared verbatim with the corpus (suffix-array search on the model's
  token ids), with the document and line it comes from;
* a near-duplicate score: the highest estimated Jaccard similarity of the text's character
  5-grams to any corpus document (MinHash signatures made once with the index, the same
  shingles and permutations `musegpt prepare` deduplicates with);
* for an ABC tune, bars copied: the longest run of consecutive bars shared with a corpus
  tune and how many of its bars occur in one (the measure `musegpt eval music` uses).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musegpt.originality.index import CopyIndex, CopyIndexError
from musegpt.tokenizer.base import Tokenizer

SIGNATURES = "minhash.npy"
_TUNE = re.compile(r"^X:.*$(?:\n.*)*?^K:.*$", re.MULTILINE)

Signatures = np.ndarray[Any, np.dtype[np.uint64]]


def _shingle_identity(value: Any) -> Any:
    return value  # the shingles arrive hashed


def signature(text: str) -> Signatures:
    from datasketch import MinHash  # over a second to import: only when used

    from musegpt.data.clean import NUM_PERM, shingle_hashes

    minhash = MinHash(num_perm=NUM_PERM, seed=1, hashfunc=_shingle_identity)
    minhash.update_batch(shingle_hashes(text))
    found: Signatures = minhash.digest()
    return found


def document_texts(index: CopyIndex, tokenizer: Tokenizer) -> Iterable[str]:
    for number in range(len(index.documents)):
        yield tokenizer.decode(index.document_tokens(number).tolist())


def save_signatures(folder: Path, texts: Iterable[str]) -> None:
    rows = [signature(text) for text in texts]
    array = np.stack(rows) if rows else np.zeros((0, 1), dtype=np.uint64)
    tmp = folder / f".{SIGNATURES}.tmp.npy"
    np.save(tmp, array)
    tmp.replace(folder / SIGNATURES)


@dataclass
class Source:
    """Where a copied span comes from in the corpus."""

    document: int  # its number, in corpus order (training documents, then validation)
    line: int  # the line of the document the span starts on, from 1
    first_line: str  # the document's first line (a title, for poems and tunes)


@dataclass
class BarsCopied:
    bars: int  # the tune's bars
    longest_run: int  # consecutive bars shared with one corpus tune (capped, see `capped`)
    found: int  # the tune's bars that occur in some corpus tune
    capped: bool  # the longest run reached the measure's window: it may be longer


@dataclass
class OriginalityReport:
    tokens: int  # the text's length in the model's tokens (a tune's: its body's)
    characters: int
    longest_tokens: int  # the longest span shared verbatim with the corpus
    longest_text: str
    source: Source | None  # one of its occurrences (the first in suffix order)
    occurrences: int  # how often the span occurs in the corpus
    near_duplicate: float  # estimated Jaccard similarity to the closest corpus document
    nearest_document: int | None
    bars: BarsCopied | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def check_text(
    text: str, index: CopyIndex, tokenizer: Tokenizer, folder: Path | None = None
) -> OriginalityReport:
    """The originality report of `text` against the corpus of `index` (whose signatures,
    when `folder` holds them, give the near-duplicate score). Of an ABC tune only the body
    (the music, after `K:`) is measured: headers are shared by thousands of tunes."""
    header = _TUNE.search(text)
    whole, text = text, text[header.end() :] if header else text
    ids = tokenizer.encode(text)
    span = index.longest_span(ids)
    longest_text, source = "", None
    if span is not None:
        longest_text = tokenizer.decode(ids[span.start : span.start + span.length])
        source = _source(index, tokenizer, span.position, longest_text)
    near, nearest = 0.0, None
    if folder is not None and (folder / SIGNATURES).is_file():
        signatures = np.load(folder / SIGNATURES)
        if len(signatures):
            scores = (signatures == signature(text)).mean(axis=1)
            nearest = int(scores.argmax())
            near = float(scores[nearest])
    bars = _bars_copied(whole, index, tokenizer) if header else None
    return OriginalityReport(
        len(ids),
        len(text),
        span.length if span else 0,
        longest_text,
        source,
        span.occurrences if span else 0,
        near,
        nearest,
        bars,
    )


def _source(index: CopyIndex, tokenizer: Tokenizer, position: int, copied: str) -> Source:
    number, start = index.document_of(position)
    before = tokenizer.decode(index.tokens[start:position].tolist())
    document = tokenizer.decode(index.document_tokens(number)[:200].tolist())
    # The line of the span's first words: a span often begins with the line break before them.
    skipped = len(copied) - len(copied.lstrip("\n"))
    return Source(number, before.count("\n") + skipped + 1, document.split("\n", 1)[0])


def _bars_copied(text: str, index: CopyIndex, tokenizer: Tokenizer) -> BarsCopied | None:
    from musegpt.music.abc import parse_header
    from musegpt.music.evaluate import COPY_WINDOW
    from musegpt.music.evaluate import CopyIndex as BarRuns
    from musegpt.music.tune import bars_of

    try:
        _, body = parse_header(text[_TUNE.search(text).start() :])  # type: ignore[union-attr]
    except ValueError:
        return None
    bars = bars_of(body)
    runs = BarRuns(document_texts(index, tokenizer))
    found = sum(hash((bar,)) in runs.runs[1] for bar in bars)
    longest = runs.longest(bars)
    return BarsCopied(len(bars), longest, found, longest >= COPY_WINDOW)


def longest_copy_meta(text: str, model_path: str, tokenizer: Tokenizer) -> dict[str, Any]:
    """The longest span `text` copies from its model's indexed training corpus, for a work's
    provenance: its length in tokens and characters, the span and where it comes from, or
    `{"indexed": False}` when the model has no index (`musegpt originality index`)."""
    from musegpt.originality.store import linked_folder, open_index

    try:
        folder = linked_folder(model_path) if model_path else None
        if folder is None:
            return {"indexed": False}
        index = open_index(folder, tokenizer)
    except CopyIndexError as err:  # a damaged index must not cost the work itself
        return {"indexed": False, "error": str(err)}
    ids = tokenizer.encode(text)
    span = index.longest_span(ids)
    if span is None:
        return {"indexed": True, "tokens": 0, "characters": 0, "text": ""}
    copied = tokenizer.decode(ids[span.start : span.start + span.length])
    source = _source(index, tokenizer, span.position, copied)
    return {
        "indexed": True,
        "tokens": span.length,
        "characters": len(copied),
        "text": copied,
        "occurrences": span.occurrences,
        "document": source.document,
        "line": source.line,
        "first_line": source.first_line,
    }
