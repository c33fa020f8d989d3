"""The `abc-folk` corpus: the folk-tune ABC files shipped in music21's corpus, one normalised
tune per document, kept only when music21 itself can parse it.

Parsing ~13,000 tunes with music21 takes minutes, so the cleaned tunes are cached (one JSON
string per line) in the cache folder, keyed by music21's version and this module's
`FORMAT`; the cache is written while the tunes stream out and renamed into place only once
complete, so an interrupted run never leaves a partial cache behind.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from musegpt.music.abc import normalise_tune, split_tunes
from musegpt.paths import cache_dir

FORMAT = 1  # bump when normalisation changes, so old caches are not reused
FOLDERS = (
    "airdsAirs",
    "essenFolksong",
    "miscFolk",
    "nottingham-dataset",
    "oneills1850",
    "ryansMammoth",
)
_CHUNK = 32  # tunes per task sent to a worker process


def wanted(path: str) -> bool:
    """music21's distribution files that hold the folk tunes."""
    parts = path.split("/")
    return (
        len(parts) == 4
        and parts[:2] == ["music21", "corpus"]
        and parts[2] in FOLDERS
        and parts[3].endswith(".abc")
    )


def parses(tune: str) -> bool:
    """music21 reads `tune` into a score with at least one note."""
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            score = converter.parse(tune, format="abc")
            return len(score.flatten().notes) > 0
        except Exception:  # music21 raises many kinds on broken ABC: all mean "drop it"
            return False


def clean(raw: str) -> str | None:
    """The normalised tune when music21 parses it, else None."""
    tune = normalise_tune(raw)
    return tune if tune is not None and parses(tune) else None


def _clean_chunk(raws: Sequence[str]) -> list[str | None]:
    return [clean(raw) for raw in raws]


def raw_tunes(files: Sequence[Path]) -> Iterator[str]:
    for file in files:
        yield from split_tunes(file.read_text(encoding="utf-8", errors="replace"))


def cache_path(version: str) -> Path:
    return cache_dir() / f"abc-folk-music21-{version}-v{FORMAT}.jsonl"


def cleaned_tunes(files: Sequence[Path], version: str, workers: int | None = None) -> Iterator[str]:
    """The corpus's tunes in file order: from the cache, or cleaned (in parallel) and cached."""
    cache = cache_path(version)
    if cache.is_file():
        with open(cache, encoding="utf-8") as f:
            for line in f:
                tune: str = json.loads(line)
                yield tune
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    raws = list(raw_tunes(files))
    chunks = [raws[i : i + _CHUNK] for i in range(0, len(raws), _CHUNK)]
    done = False
    try:
        with (
            open(tmp, "w", encoding="utf-8") as out,
            ProcessPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool,
        ):
            for results in pool.map(_clean_chunk, chunks):  # map keeps the file order
                for kept in results:
                    if kept is not None:
                        out.write(json.dumps(kept, ensure_ascii=False) + "\n")
                        yield kept
        done = True
    finally:
        if done:
            os.replace(tmp, cache)
        else:  # stopped early (a --limit, an error): the cache would be incomplete
            tmp.unlink(missing_ok=True)
