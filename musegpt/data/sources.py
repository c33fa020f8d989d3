"""Where documents come from: text files, JSON Lines files, folders and built-in corpora.

Each source can describe itself for the manifest (with content hashes, cheap enough to run on
every `prepare` to see whether anything changed) and yield its raw documents.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from musegpt.data.builtin import BUILTINS, BuiltinCorpus, PackageData, get_builtin
from musegpt.tokenizer.base import EOT

FOLDER_SUFFIXES = (".txt", ".md", ".jsonl")


class SplitOn(StrEnum):
    """How a text file is cut into documents."""

    FILE = "file"  # the whole file is one document
    BLANK_LINE = "blank-line"  # paragraphs / stanzas separated by blank lines
    LINE = "line"  # every non-empty line
    EOT = "eot"  # the literal <|endoftext|> separator, as other tools export corpora


_BLANK_LINES = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class ReadOptions:
    split_on: SplitOn = SplitOn.FILE
    field: str = "text"  # the JSON Lines field holding the text


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason})") from None


def split_text(text: str, split_on: SplitOn) -> list[str]:
    text = text.replace("\r\n", "\n")
    if split_on is SplitOn.FILE:
        parts = [text]
    elif split_on is SplitOn.BLANK_LINE:
        parts = _BLANK_LINES.split(text)
    elif split_on is SplitOn.LINE:
        parts = text.split("\n")
    else:
        parts = text.split(EOT)
    return [p for p in parts if p.strip()]


def jsonl_documents(path: Path, field: str) -> Iterator[str]:
    """The `field` of every line. A line that is not a JSON object with a string `field` is an
    error naming file and line: skipping it silently would hide a broken export."""
    text = read_text(path)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict) or field not in record:
            raise ValueError(f"{path}, line {number}: no {field!r} field (choose one with --field)")
        value = record[field]
        if not isinstance(value, str):
            raise ValueError(
                f"{path}, line {number}: field {field!r} is {type(value).__name__}, not text"
            )
        yield value


def file_documents(path: Path, options: ReadOptions) -> Iterator[str]:
    if path.suffix.lower() == ".jsonl":
        yield from jsonl_documents(path, options.field)
    else:
        yield from split_text(read_text(path), options.split_on)


class Source(ABC):
    label: str  # how messages and the progress display name it

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able description with content hashes, for the manifest and fingerprint."""

    @abstractmethod
    def documents(self) -> Iterator[str]:
        """Raw documents, in a fixed order."""


class FileSource(Source):
    def __init__(self, path: Path, options: ReadOptions) -> None:
        self.path, self.options, self.label = path, options, str(path)

    def describe(self) -> dict[str, Any]:
        return {"kind": "file", "path": str(self.path), "sha256": sha256_file(self.path)}

    def documents(self) -> Iterator[str]:
        return file_documents(self.path, self.options)


class FolderSource(Source):
    """Every .txt, .md and .jsonl file below a folder, in sorted path order."""

    def __init__(self, path: Path, options: ReadOptions) -> None:
        self.path, self.options, self.label = path, options, str(path)

    def files(self) -> list[Path]:
        found = [
            p
            for p in self.path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in FOLDER_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(self.path).parts)
        ]
        if not found:
            raise FileNotFoundError(
                f"folder {self.path} holds no {', '.join(FOLDER_SUFFIXES)} files"
            )
        return sorted(found, key=lambda p: p.relative_to(self.path).as_posix())

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "folder",
            "path": str(self.path),
            "files": [
                {"path": f.relative_to(self.path).as_posix(), "sha256": sha256_file(f)}
                for f in self.files()
            ],
        }

    def documents(self) -> Iterator[str]:
        for file in self.files():
            yield from file_documents(file, self.options)


class BuiltinSource(Source):
    def __init__(self, corpus: BuiltinCorpus) -> None:
        self.corpus, self.label = corpus, corpus.name
        self._data: PackageData | None = None

    def data(self) -> PackageData:
        if self._data is None:
            self._data = self.corpus.locate()
        return self._data

    def describe(self) -> dict[str, Any]:
        data = self.data()
        return {
            "kind": "builtin",
            "name": self.corpus.name,
            "package": data.package,
            "version": data.version,
            "files": [
                {"path": f.relative_to(data.root).as_posix(), "sha256": sha256_file(f)}
                for f in data.files
            ],
        }

    def documents(self) -> Iterator[str]:
        return self.corpus.documents(self.data())


def resolve_source(spec: str, options: ReadOptions) -> Source:
    """A file or folder path, or the name of a built-in corpus (a path wins if both exist)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return FolderSource(path.resolve(), options)
    if path.is_file():
        return FileSource(path.resolve(), options)
    if path.exists():
        raise ValueError(f"source {spec} is neither a file nor a folder")
    if spec in BUILTINS:
        return BuiltinSource(get_builtin(spec))
    if "/" in spec or path.suffix:  # meant as a path, not a corpus name
        raise FileNotFoundError(f"source not found: {spec} (no such file or folder)")
    raise FileNotFoundError(
        f"source not found: {spec} is no file or folder, and not a built-in corpus "
        f"(built-in corpora: {', '.join(BUILTINS)})"
    )
