"""One token per character, with byte fallback.

Ids: the training characters (sorted), then `<|endoftext|>`, then 256 byte tokens. A
character never seen in training is encoded as its UTF-8 bytes, so every string still
round-trips exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from musegpt.tokenizer.base import EOT, Tokenizer


class CharTokenizer(Tokenizer):
    kind: ClassVar[str] = "char"

    def __init__(self, chars: Iterable[str]) -> None:
        self._chars = sorted(set(chars))
        bad = [c for c in self._chars if len(c) != 1]
        if bad:
            raise ValueError(f"char vocabulary entries must be single characters: {bad[:5]}")
        self._stoi = {c: i for i, c in enumerate(self._chars)}
        self._eot_id = len(self._chars)
        self._byte_base = self._eot_id + 1
        self._bytes = [c.encode("utf-8") for c in self._chars]
        self._bytes.append(EOT.encode("utf-8"))
        self._bytes.extend(bytes([b]) for b in range(256))

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        """Vocabulary = every character that occurs in `texts` (the separator string is not
        counted: it has its own token)."""
        seen: set[str] = set()
        for text in texts:
            seen.update(text.replace(EOT, ""))
        return cls(seen)

    @property
    def chars(self) -> list[str]:
        return list(self._chars)

    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    @property
    def eot_id(self) -> int:
        return self._eot_id

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for i, piece in enumerate(text.split(EOT)):
            if i:
                ids.append(self._eot_id)
            ids.extend(self._encode_plain(piece))
        return ids

    def _encode_plain(self, text: str) -> list[int]:
        stoi = self._stoi
        try:
            return [stoi[c] for c in text]  # the common case: every character known
        except KeyError:
            pass
        ids: list[int] = []
        for c in text:
            known = stoi.get(c)
            if known is not None:
                ids.append(known)
            else:
                ids.extend(self._byte_base + b for b in c.encode("utf-8"))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        if not 0 <= token_id < len(self._bytes):
            last = len(self._bytes) - 1
            raise ValueError(f"token id {token_id} outside the vocabulary (0..{last})")
        return self._bytes[token_id]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self._chars}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        chars = data.get("chars")
        if data.get("kind") != cls.kind or not isinstance(chars, list):
            raise ValueError("not a char tokenizer description (needs kind 'char', chars)")
        return cls(chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(chars={len(self._chars)}, vocab_size={self.vocab_size})"
