"""`musegpt prepare`: sources -> cleaned, deduplicated, tokenized train/val token files.

Pipeline (streaming: documents pass through one at a time, kept ones are spilled to a
temporary file so even the 3.1M-line poetry corpus is never held as one big list):

    read each source -> clean (NFC, no control characters) -> length filters
      -> exact duplicates -> near duplicates (MinHash LSH) -> split by a hash of the text
         (a single document is cut in two: its last ~val_fraction is the validation split)
      -> train the tokenizer on the training split (or reuse one) -> tokenize -> write

The output folder's layout is described in `musegpt.data.dataset`. `manifest.json` holds a
fingerprint of the sources' contents and the settings; preparing again with the same
fingerprint returns at once without touching any file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import numpy as np

from musegpt.data.clean import NUM_PERM, SHINGLE_CHARS, Deduplicator, Verdict, clean_text
from musegpt.data.dataset import MANIFEST, TOKENIZER, token_dtype
from musegpt.data.sources import ReadOptions, Source, SplitOn, resolve_source
from musegpt.fileio import atomic_write, atomic_write_text
from musegpt.tokenizer.base import Tokenizer, tokenizer_from_json
from musegpt.tokenizer.bpe import BPETokenizer
from musegpt.tokenizer.char import CharTokenizer

FORMAT = "musegpt-corpus-1"
SPLIT_FILES = {"train": "train.bin", "val": "val.bin"}
ENCODE_BATCH = 1024  # documents per tokenizer call: big enough for the BPE thread pool


@dataclass(frozen=True)
class PrepareSettings:
    tokenizer: Literal["bpe", "char"] = "bpe"
    vocab_size: int = 8192  # BPE only
    tokenizer_from: Path | None = None  # reuse the tokenizer of a corpus folder or model
    split_on: SplitOn = SplitOn.FILE
    field: str = "text"
    limit: int | None = None  # documents read per source at most
    min_chars: int = 1
    max_chars: int | None = None
    dedup_threshold: float = 0.8  # Jaccard similarity of near duplicates; 0 = off
    val_fraction: float = 0.05
    seed: int = 1337  # of the train/validation split

    def validate(self) -> None:
        if self.tokenizer not in ("bpe", "char"):
            raise ValueError(f"tokenizer must be 'bpe' or 'char', got {self.tokenizer!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.dedup_threshold <= 1.0:
            raise ValueError(f"dedup threshold must be in [0, 1], got {self.dedup_threshold}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max chars ({self.max_chars}) is below min chars ({self.min_chars})")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["split_on"] = self.split_on.value
        data["tokenizer_from"] = str(self.tokenizer_from) if self.tokenizer_from else None
        if self.tokenizer_from or self.tokenizer != "bpe":
            data["vocab_size"] = None  # not used: keep it from changing the fingerprint
        if self.tokenizer_from:
            data["tokenizer"] = None
        return data


@dataclass
class Counts:
    documents_read: int = 0
    too_short: int = 0
    too_long: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    kept: int = 0
    train_documents: int = 0
    val_documents: int = 0
    train_tokens: int = 0
    val_tokens: int = 0
    # 1 when the only document was cut in two: its head for training, its tail (about
    # val_fraction of its characters) for validation
    split_documents: int = 0


@dataclass(frozen=True)
class PrepareReport:
    out: Path
    up_to_date: bool  # True: nothing changed since the last run, nothing was written
    manifest: dict[str, Any]
    seconds: float

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.manifest["counts"]
        return counts


class Progress(Protocol):
    """What `prepare_corpus` reports as it goes (the CLI draws it as progress bars)."""

    def start(self, description: str, total: int | None = None) -> None: ...

    def advance(self, amount: int = 1) -> None: ...


class _NoProgress:
    def start(self, description: str, total: int | None = None) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass


def prepare_corpus(
    sources: Sequence[str],
    out: str | Path,
    settings: PrepareSettings | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> PrepareReport:
    """Prepare `sources` (paths or built-in corpus names) into the corpus folder `out`.

    `options` override fields of `settings`, e.g. `prepare_corpus(["shakespeare"], out,
    tokenizer="char")`."""
    started = time.perf_counter()
    settings = dataclasses.replace(settings or PrepareSettings(), **options)
    settings.validate()
    progress = progress or _NoProgress()
    if not sources:
        raise ValueError("no sources given: name files, folders or built-in corpora")
    out = Path(out).expanduser()
    read_options = ReadOptions(split_on=settings.split_on, field=settings.field)
    resolved = [resolve_source(spec, read_options) for spec in sources]
    progress.start("checking sources", total=len(resolved))
    described = []
    for source in resolved:  # hashes every input file; may fetch a built-in corpus first
        described.append(_describe(source))
        progress.advance()
    reused = load_tokenizer(settings.tokenizer_from) if settings.tokenizer_from else None
    fingerprint = _fingerprint(described, settings, reused)

    existing = _up_to_date_manifest(out, fingerprint)
    if existing is not None:
        return PrepareReport(out, True, existing, time.perf_counter() - started)

    out.mkdir(parents=True, exist_ok=True)
    # Without a manifest the folder is not a corpus: a run that dies half-way can never be
    # mistaken for a finished one.
    (out / MANIFEST).unlink(missing_ok=True)
    counts = Counts()
    with _spill_file(out) as spill:
        per_source, keys = _collect(resolved, settings, spill, counts, progress)
        _check_kept(sources, settings, counts)
        # One document (a single file): its tail is held out, so there is a validation split.
        if (
            counts.kept == 1
            and settings.val_fraction > 0
            and _split_single_document(spill, settings.val_fraction)
        ):
            counts.split_documents = 1
            is_val = np.array([False, True])
        else:
            is_val = assign_splits(keys, settings.val_fraction)
        counts.val_documents = int(is_val.sum())
        counts.train_documents = len(is_val) - counts.val_documents
        tokenizer = reused or _train_tokenizer(spill, is_val, settings, progress)
        dtype = token_dtype(tokenizer.vocab_size)
        _write_tokens(spill, is_val, tokenizer, dtype, out, counts, progress)

    manifest = _manifest(described, per_source, settings, fingerprint, counts, tokenizer, dtype)
    atomic_write_text(out / TOKENIZER, tokenizer.to_json())
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return PrepareReport(out, False, manifest, time.perf_counter() - started)


# ---------------------------------------------------------------- sources and fingerprint


def _describe(source: Source) -> dict[str, Any]:
    try:
        return source.describe()
    except PermissionError as err:
        raise PermissionError(
            f"cannot read source {err.filename or source.label}: permission denied"
        ) from None


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer of a prepared corpus folder, a tokenizer.json, or a model file/folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"--tokenizer-from {path}: no such file or folder (give a prepared corpus folder, "
            "its tokenizer.json, or a MuseGPT model)"
        )
    if path.is_dir() and (path / TOKENIZER).is_file():
        path = path / TOKENIZER
    if path.suffix == ".json":
        return tokenizer_from_json(path.read_text(encoding="utf-8"))
    from musegpt.model.io import read_metadata  # imports torch: only when a model is named

    return tokenizer_from_json(read_metadata(path)["tokenizer"])


def _fingerprint(
    described: list[dict[str, Any]], settings: PrepareSettings, reused: Tokenizer | None
) -> str:
    identity = {
        "format": FORMAT,
        "sources": described,
        "settings": settings.to_dict(),
        "dedup": {"num_perm": NUM_PERM, "shingle_chars": SHINGLE_CHARS},
        "tokenizer": hashlib.sha256(reused.to_json().encode()).hexdigest() if reused else None,
    }
    blob = json.dumps(identity, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _up_to_date_manifest(out: Path, fingerprint: str) -> dict[str, Any] | None:
    """The existing manifest if it has this fingerprint and its files are all there."""
    try:
        manifest: dict[str, Any] = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("fingerprint") != fingerprint or not (out / TOKENIZER).is_file():
        return None
    itemsize = np.dtype(manifest["dtype"]).itemsize
    for info in manifest["splits"].values():
        file = out / info["file"]
        if not file.is_file() or file.stat().st_size != info["tokens"] * itemsize:
            return None
    return manifest


# ---------------------------------------------------------------- reading and cleaning


@contextmanager
def _spill_file(out: Path) -> Iterator[Path]:
    """A temporary file in `out` for the kept documents (one JSON string per line)."""
    with tempfile.TemporaryDirectory(dir=out, prefix=".prepare-") as tmp:
        yield Path(tmp) / "documents.jsonl"


def _read_spill(spill: Path) -> Iterator[str]:
    with open(spill, encoding="utf-8") as f:
        for line in f:
            document: str = json.loads(line)
            yield document


def split_key(text: str, seed: int) -> int:
    """A 64-bit hash of the document: the split depends on the text alone, not on order."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=str(seed).encode())
    return int.from_bytes(digest.digest(), "big")


def _collect(
    sources: list[Source],
    settings: PrepareSettings,
    spill: Path,
    counts: Counts,
    progress: Progress,
) -> tuple[list[dict[str, int]], list[int]]:
    """Read, clean and deduplicate every source, writing kept documents to `spill`.
    Returns per-source counts and the split key of each kept document."""
    dedup = Deduplicator(settings.dedup_threshold or None)
    keys: list[int] = []
    per_source: list[dict[str, int]] = []
    with open(spill, "w", encoding="utf-8") as f:
        for source in sources:
            progress.start(f"reading {source.label}")
            read = kept = 0
            for raw in itertools.islice(source.documents(), settings.limit):
                read += 1
                text = clean_text(raw)
                if _keep(text, settings, dedup, counts):
                    _spill(f, text)
                    keys.append(split_key(text, settings.seed))
                    kept += 1
                progress.advance()
            counts.documents_read += read
            counts.kept += kept
            per_source.append({"documents_read": read, "documents_kept": kept})
    return per_source, keys


def _keep(text: str, settings: PrepareSettings, dedup: Deduplicator, counts: Counts) -> bool:
    """Apply the length filters, then deduplication; count whatever is removed."""
    if len(text) < max(settings.min_chars, 1):
        counts.too_short += 1
        return False
    if settings.max_chars is not None and len(text) > settings.max_chars:
        counts.too_long += 1
        return False
    verdict = dedup.check(text)
    if verdict is Verdict.EXACT_DUPLICATE:
        counts.exact_duplicates += 1
    elif verdict is Verdict.NEAR_DUPLICATE:
        counts.near_duplicates += 1
    return verdict is Verdict.KEEP


def _check_kept(sources: Sequence[str], settings: PrepareSettings, counts: Counts) -> None:
    """Refuse a corpus with no text left to train on, saying why and what to do."""
    if counts.kept:
        return
    named = ", ".join(sources)
    if counts.documents_read == 0 or (counts.too_short and settings.min_chars <= 1):
        raise ValueError(f"no text to prepare: {named} is empty or blank; give files with text")
    removed = {
        f"shorter than --min-chars {settings.min_chars}": counts.too_short,
        f"longer than --max-chars {settings.max_chars}": counts.too_long,
        "exact duplicates": counts.exact_duplicates,
        "near duplicates": counts.near_duplicates,
    }
    why = ", ".join(f"{n} {what}" for what, n in removed.items() if n)
    raise ValueError(
        f"no text to prepare: all {counts.documents_read} documents of {named} were removed "
        f"({why}); relax those options or give more text"
    )


def split_point(text: str, val_fraction: float) -> int:
    """Where to cut one document so that about `val_fraction` of its characters come after
    the cut: at the line break nearest that point, else the space, else exactly there."""
    target = round(len(text) * (1 - val_fraction))
    target = min(max(target, 1), len(text) - 1)
    reach = min(target, len(text) - target) // 2  # stay near the target, both parts kept
    for separator in ("\n", " "):
        before = text.rfind(separator, target - reach, target + 1)
        after = text.find(separator, target, target + reach + 1)
        found = [i + 1 for i in (before, after) if i >= 0 and 0 < i + 1 < len(text)]
        if found:
            return min(found, key=lambda i: abs(i - target))
    return target


def _split_single_document(spill: Path, val_fraction: float) -> bool:
    """Rewrite a spill of one document as two: its head (training) and tail (validation).
    False, leaving it whole, for a document too short to cut."""
    (document,) = _read_spill(spill)
    if len(document) < 2:
        return False
    cut = split_point(document, val_fraction)
    with open(spill, "w", encoding="utf-8") as f:
        _spill(f, document[:cut])
        _spill(f, document[cut:])
    return True


def _spill(f: IO[str], text: str) -> None:
    f.write(json.dumps(text, ensure_ascii=False))
    f.write("\n")


def assign_splits(keys: Sequence[int], val_fraction: float) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which documents go to validation: those whose key falls below `val_fraction` of the key
    range. Training always gets a document; with two or more (and a fraction above 0)
    validation does too."""
    hashes = np.array(keys, dtype=np.uint64)
    is_val: np.ndarray[Any, np.dtype[np.bool_]] = hashes.astype(np.float64) / 2.0**64 < val_fraction
    if len(hashes) == 1:
        is_val[0] = False
    elif len(hashes) >= 2 and val_fraction > 0:
        if not is_val.any():
            is_val[int(np.argmin(hashes))] = True
        if is_val.all():
            is_val[int(np.argmax(hashes))] = False
    return is_val


# ---------------------------------------------------------------- tokenizer and token files


def _train_tokenizer(
    spill: Path,
    is_val: np.ndarray[Any, np.dtype[np.bool_]],
    settings: PrepareSettings,
    progress: Progress,
) -> Tokenizer:
    """Train on the training split only, so validation text stays unseen."""
    train_count = int((~is_val).sum())
    progress.start(f"training {settings.tokenizer} tokenizer", total=train_count)

    def texts() -> Iterator[str]:
        for document, val in zip(_read_spill(spill), is_val, strict=True):
            if not val:
                yield document
                progress.advance()

    if settings.tokenizer == "char":
        return CharTokenizer.train(texts())
    return BPETokenizer.train(texts(), settings.vocab_size)


def _encode(tokenizer: Tokenizer, documents: list[str]) -> list[list[int]]:
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode_batch(documents)
    return [tokenizer.encode(d) for d in documents]


def _write_tokens(
    spill: Path,
    is_val: np.ndarray[Any, np.dtype[np.bool_]],
    tokenizer: Tokenizer,
    dtype: np.dtype[Any],
    out: Path,
    counts: Counts,
    progress: Progress,
) -> None:
    """Tokenize every kept document into train.bin or val.bin, each followed by the separator.
    Both files are written atomically (the inner one is renamed into place first)."""
    progress.start("tokenizing", total=len(is_val))

    little_endian = dtype.newbyteorder("<")

    def fill(train_tmp: Path, val_tmp: Path) -> None:
        with open(train_tmp, "wb") as train_f, open(val_tmp, "wb") as val_f:
            documents = _read_spill(spill)
            flags = iter(is_val.tolist())
            while batch := list(itertools.islice(documents, ENCODE_BATCH)):
                train_ids: list[int] = []
                val_ids: list[int] = []
                for ids, val in zip(_encode(tokenizer, batch), flags, strict=False):
                    target = val_ids if val else train_ids
                    target.extend(ids)
                    target.append(tokenizer.eot_id)
                np.array(train_ids, dtype=little_endian).tofile(train_f)
                np.array(val_ids, dtype=little_endian).tofile(val_f)
                counts.train_tokens += len(train_ids)
                counts.val_tokens += len(val_ids)
                progress.advance(len(batch))

    def fill_both(train_tmp: Path) -> None:
        atomic_write(out / SPLIT_FILES["val"], lambda val_tmp: fill(train_tmp, val_tmp))

    atomic_write(out / SPLIT_FILES["train"], fill_both)


def _manifest(
    described: list[dict[str, Any]],
    per_source: list[dict[str, int]],
    settings: PrepareSettings,
    fingerprint: str,
    counts: Counts,
    tokenizer: Tokenizer,
    dtype: np.dtype[Any],
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "sources": [{**d, **c} for d, c in zip(described, per_source, strict=True)],
        "settings": settings.to_dict(),
        "dedup": {"num_perm": NUM_PERM, "shingle_chars": SHINGLE_CHARS},
        "counts": asdict(counts),
        "tokenizer": {
            "kind": tokenizer.kind,
            "vocab_size": tokenizer.vocab_size,
            "eot_id": tokenizer.eot_id,
            "from": str(settings.tokenizer_from) if settings.tokenizer_from else None,
        },
        "dtype": dtype.name,
        "splits": {
            "train": {
                "file": SPLIT_FILES["train"],
                "documents": counts.train_documents,
                "tokens": counts.train_tokens,
            },
            "val": {
                "file": SPLIT_FILES["val"],
                "documents": counts.val_documents,
                "tokens": counts.val_tokens,
            },
        },
    }


__all__ = [
    "Counts",
    "PrepareReport",
    "PrepareSettings",
    "Progress",
    "SplitOn",
    "assign_splits",
    "load_tokenizer",
    "prepare_corpus",
    "split_key",
    "split_point",
]
