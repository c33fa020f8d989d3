"""Where originality indexes live and which model uses which.

An index is built once from a prepared corpus (`musegpt prepare`'s folder: its train and
validation token files, documents in order) and saved beside it, in `DIR/originality/`.
The model it serves is linked to it in `$MUSEGPT_CACHE/originality/links.json` (model file
-> index folder), so `SamplingParams.max_copy` finds the index of the model's own corpus.
The index records a fingerprint of the tokenizer it was made with; a model with another
tokenizer is refused (its token ids would mean other text).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musegpt.data.dataset import MANIFEST, PreparedCorpus
from musegpt.fileio import atomic_write_text
from musegpt.originality.index import CopyIndex, CopyIndexError
from musegpt.paths import cache_dir
from musegpt.tokenizer.base import Tokenizer

INDEX_FOLDER = "originality"
# Encoded to tell tokenizers apart: English, Chinese and ABC notation.
PROBE = "The quick brown fox, 'twas brillig.\n床前明月光，疑是地上霜。\nX:1\nK:D\n|:A2FA dAFA|\n"

_loaded: dict[Path, CopyIndex] = {}
_lock = threading.Lock()


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    ids = [tokenizer.vocab_size, tokenizer.eot_id, *tokenizer.encode(PROBE)]
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:24]


def links_file() -> Path:
    return cache_dir() / INDEX_FOLDER / "links.json"


def model_key(model_path: str | Path) -> str:
    return str(Path(model_path).expanduser().resolve())


def _links() -> dict[str, str]:
    file = links_file()
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CopyIndexError(f"{file} is unreadable ({err}); delete it and index again") from None
    return {str(k): str(v) for k, v in data.items()}


def link(model_path: str | Path, folder: Path) -> None:
    """Make `folder`'s index the one `max_copy` uses for the model at `model_path`."""
    links = _links()
    links[model_key(model_path)] = str(folder.resolve())
    text = json.dumps(dict(sorted(links.items())), indent=2, ensure_ascii=False)
    atomic_write_text(links_file(), text + "\n")


def linked_folder(model_path: str | Path) -> Path | None:
    found = _links().get(model_key(model_path))
    return Path(found) if found else None


def open_index(folder: Path, tokenizer: Tokenizer | None = None) -> CopyIndex:
    """The index in `folder` (loaded once per process), checked against `tokenizer`."""
    folder = folder.resolve()
    with _lock:
        index = _loaded.get(folder)
        if index is None:
            index = _loaded[folder] = CopyIndex.load(folder)
    if tokenizer is not None and index.meta.get("tokenizer") != tokenizer_fingerprint(tokenizer):
        raise CopyIndexError(
            f"the originality index in {folder} was made with another tokenizer than this "
            "model's; index the model's own corpus with `musegpt originality index`"
        )
    return index


def index_for_model(model_path: str | Path, tokenizer: Tokenizer, name: str) -> CopyIndex:
    """The index linked to the model at `model_path`, or a clear error saying how to make one."""
    folder = linked_folder(model_path) if model_path else None
    if folder is None:
        raise CopyIndexError(
            f"max_copy needs an originality index of {name}'s training corpus and none is "
            f"built: run `musegpt originality index --model {name}` (add --corpus DIR for a "
            "model that is not packaged)"
        )
    return open_index(folder, tokenizer)


def index_corpus(corpus_folder: Path, tokenizer: Tokenizer) -> tuple[CopyIndex, Path]:
    """Index a prepared corpus (train then validation documents) beside it, for a model
    with `tokenizer` (which must be the corpus's own)."""
    corpus = PreparedCorpus.open(corpus_folder)
    fingerprint = tokenizer_fingerprint(tokenizer)
    if tokenizer_fingerprint(corpus.tokenizer) != fingerprint:
        raise CopyIndexError(
            f"the corpus {corpus_folder} was prepared with another tokenizer than the model's; "
            "prepare it with the model's: `musegpt prepare SOURCE... --tokenizer-from MODEL`"
        )
    parts = [
        np.asarray(corpus.tokens(split))
        for split in ("train", "val")
        if split in corpus.manifest["splits"]
    ]
    tokens = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint16)
    meta: dict[str, Any] = {
        "corpus": str(corpus_folder.resolve()),
        "fingerprint": corpus.manifest.get("fingerprint"),
        "tokenizer": fingerprint,
        "documents_from": "train then val",
    }
    index = CopyIndex.build(tokens, tokenizer.eot_id, meta)
    folder = corpus_folder / INDEX_FOLDER
    index.save(folder)
    with _lock:
        _loaded.pop(folder.resolve(), None)
    return index, folder


def index_documents(
    documents: Iterable[str], tokenizer: Tokenizer, folder: Path, described: dict[str, Any]
) -> CopyIndex:
    """Index plain documents (a corpus the user names for a model of its own tokenizer)."""
    ids: list[int] = []
    for document in documents:
        ids.extend(tokenizer.encode(document))
        ids.append(tokenizer.eot_id)
    meta = {**described, "tokenizer": tokenizer_fingerprint(tokenizer)}
    index = CopyIndex.build(np.asarray(ids, dtype=np.int64), tokenizer.eot_id, meta)
    index.save(folder)
    with _lock:
        _loaded.pop(folder.resolve(), None)
    return index


@dataclass(frozen=True)
class Recipe:
    """How a packaged model's corpus was prepared (docs/poetry.md, docs/music.md)."""

    sources: tuple[str, ...]
    options: dict[str, Any]


PACKAGED_CORPORA = {
    "poetry": Recipe(("poetry-en", "tang-poems"), {"limit": 12000}),
    "abc-folk": Recipe(("abc-folk",), {}),
}


@dataclass(frozen=True)
class Built:
    index: CopyIndex
    folder: Path
    corpus: str  # what was indexed, in words


def build_for_model(
    model_path: str | Path, tokenizer: Tokenizer, name: str, corpus: Sequence[str] = ()
) -> Built:
    """Index the corpus of a model and link the model to it. With no `corpus`, a packaged
    model's own corpus is prepared as it was for training (once) and indexed; otherwise
    `corpus` is a prepared corpus folder, or sources as `musegpt prepare` takes them
    (files, folders, built-in corpus names), read and tokenized with the model's tokenizer."""
    # Imported here: datasketch (through these) takes over a second to import.
    from musegpt.data.clean import clean_text
    from musegpt.data.prepare import prepare_corpus
    from musegpt.data.sources import ReadOptions, SplitOn, resolve_source
    from musegpt.originality.check import document_texts, save_signatures

    if not corpus:
        recipe = PACKAGED_CORPORA.get(Path(model_path).stem) if model_path else None
        if recipe is None:
            raise CopyIndexError(
                f"{name} is not a packaged model, so its training corpus is not known: name it "
                "with --corpus (a prepared corpus folder, files or built-in corpus names)"
            )
        folder = cache_dir() / "corpora" / Path(model_path).stem
        prepare_corpus(
            list(recipe.sources), folder, tokenizer_from=Path(model_path), **recipe.options
        )
        corpus = [str(folder)]
    first = Path(corpus[0]).expanduser()
    if len(corpus) == 1 and (first / MANIFEST).is_file():
        prepared = PreparedCorpus.open(first)
        if tokenizer_fingerprint(prepared.tokenizer) == tokenizer_fingerprint(tokenizer):
            index, folder = index_corpus(first, tokenizer)
        else:  # prepared for another model: its documents, in this model's tokens
            folder = first / f"{INDEX_FOLDER}-{tokenizer_fingerprint(tokenizer)[:12]}"
            texts = _prepared_documents(prepared)
            index = index_documents(texts, tokenizer, folder, {"corpus": str(first.resolve())})
        described = f"the prepared corpus {first}"
    else:
        described = ", ".join(corpus)
        options = ReadOptions(SplitOn.FILE)
        sources = [resolve_source(spec, options) for spec in corpus]
        key = hashlib.sha256(json.dumps([s.describe() for s in sources]).encode()).hexdigest()
        folder = cache_dir() / INDEX_FOLDER / f"{key[:16]}-{tokenizer_fingerprint(tokenizer)[:12]}"
        texts = (clean_text(d) for s in sources for d in s.documents())
        index = index_documents(texts, tokenizer, folder, {"corpus": described})
    save_signatures(folder, document_texts(index, tokenizer))
    if model_path:
        link(model_path, folder)
    return Built(index, folder, described)


def _prepared_documents(prepared: PreparedCorpus) -> Iterator[str]:
    for split in ("train", "val"):
        if split not in prepared.manifest["splits"]:
            continue
        tokens = np.asarray(prepared.tokens(split))
        ends = np.flatnonzero(tokens == prepared.tokenizer.eot_id)
        start = 0
        for end in ends.tolist():
            yield prepared.tokenizer.decode(tokens[start:end].tolist())
            start = end + 1
