"""The tokenizer contract every MuseGPT tokenizer keeps.

A tokenizer serialises to one JSON string, stored inside the model file, so a model and
its tokenizer never travel apart.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

EOT = "<|endoftext|>"  # document separator, as in GPT-2


class Tokenizer(ABC):
    kind: ClassVar[str]  # "bpe" or "char": picks the class when loading

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abstractmethod
    def eot_id(self) -> int:
        """Id of the `<|endoftext|>` separator."""

    @property
    def special_ids(self) -> frozenset[int]:
        """Control and special tokens: markers that stand for no text of their own (the
        end-of-text separator among them). Decoding bans them unless a caller allows them."""
        return frozenset({self.eot_id})

    @property
    def stop_ids(self) -> frozenset[int]:
        """Tokens that end a text (the end-of-text separator; some models have more)."""
        return frozenset({self.eot_id})

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids for `text`; the literal string `<|endoftext|>` becomes the separator."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text for `ids`; decode(encode(t)) == t for every Unicode string t."""

    @abstractmethod
    def token_bytes(self, token_id: int) -> bytes:
        """The UTF-8 bytes one token stands for (a token may hold part of a character);
        streaming decoders join these and emit only complete characters."""

    def all_token_bytes(self) -> list[bytes]:
        """Every token's `token_bytes`, in id order (a backend may read them faster at once)."""
        return [self.token_bytes(i) for i in range(self.vocab_size)]

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description, including `"kind"`, that `from_dict` turns back."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokenizer: ...

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def tokenizer_from_json(text: str) -> Tokenizer:
    """Rebuild whichever tokenizer `to_json` described."""
    from musegpt.images.tokenizer import ImageTokenizer  # caption + picture tokens
    from musegpt.tokenizer.bpe import BPETokenizer
    from musegpt.tokenizer.char import CharTokenizer

    data = json.loads(text)
    kinds: dict[str, type[Tokenizer]] = {
        "bpe": BPETokenizer,
        "char": CharTokenizer,
        "image": ImageTokenizer,
    }
    kind = data.get("kind")
    if kind not in kinds:
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {', '.join(kinds)}")
    return kinds[kind].from_dict(data)
