"""Reading a prepared corpus: the contract between `musegpt prepare` and training.

A prepared corpus is a folder:
    manifest.json   what went in (sources and their hashes, cleaning counts, settings) and
                    what came out ("dtype", "splits": {"train": {"file", "tokens"}, "val": ...})
    tokenizer.json  the tokenizer, as `Tokenizer.to_json()`
    train.bin       token ids of all training documents, each followed by <|endoftext|>,
    val.bin         as a flat little-endian array of `dtype` (uint16, or uint32 past 65,535)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musegpt.tokenizer.base import Tokenizer, tokenizer_from_json

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"


def token_dtype(vocab_size: int) -> np.dtype[Any]:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


@dataclass
class PreparedCorpus:
    path: Path
    manifest: dict[str, Any]
    tokenizer: Tokenizer

    @classmethod
    def open(cls, path: str | Path) -> PreparedCorpus:
        path = Path(path).expanduser()
        manifest_file = path / MANIFEST
        if not manifest_file.is_file():
            raise FileNotFoundError(
                f"{path} is not a prepared corpus (no {MANIFEST}); "
                "create one with `musegpt prepare SOURCE... --out DIR`"
            )
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        tokenizer = tokenizer_from_json((path / TOKENIZER).read_text(encoding="utf-8"))
        return cls(path=path, manifest=manifest, tokenizer=tokenizer)

    def tokens(self, split: str) -> np.ndarray[Any, np.dtype[Any]]:
        """The split's token ids, memory-mapped (read lazily, never loaded whole). An empty
        split (a one-document corpus, or --val-fraction 0) is an empty array: a file of
        0 bytes cannot be memory-mapped."""
        splits = self.manifest["splits"]
        if split not in splits:
            raise KeyError(f"corpus {self.path} has no {split!r} split (has {', '.join(splits)})")
        info = splits[split]
        if info["tokens"] == 0:
            return np.empty(0, dtype=self.manifest["dtype"])
        return np.memmap(self.path / info["file"], dtype=self.manifest["dtype"], mode="r")
