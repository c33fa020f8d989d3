"""Byte-level BPE (as in GPT-2), trained with the Hugging Face `tokenizers` library.

Lossless by construction: no normalizer, a byte-level pre-tokenizer without an added prefix
space, the byte-level decoder, and all 256 bytes in the initial alphabet, so every Unicode
string encodes and decodes back to itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, ClassVar

from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from musegpt.tokenizer.base import EOT, Tokenizer

MIN_VOCAB_SIZE = 257  # the 256 byte tokens and <|endoftext|>


@cache
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's byte -> printable character table that byte-level BPE tokens use.

    `tokenizers` does not expose the table, so it is rebuilt here from its definition:
    printable Latin-1 bytes stand for themselves, the rest are shifted to 256 and up."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + shifted)] = b
            shifted += 1
    return table


def _new_hf_tokenizer() -> HFTokenizer:
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    return hf


class BPETokenizer(Tokenizer):
    kind: ClassVar[str] = "bpe"

    def __init__(self, hf: HFTokenizer) -> None:
        eot_id = hf.token_to_id(EOT)
        if eot_id is None:
            raise ValueError(f"BPE tokenizer has no {EOT} token")
        self._hf = hf
        self._eot_id: int = eot_id
        self._bytes = self._token_byte_table()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Learn merges from `texts` until the vocabulary holds `vocab_size` tokens (fewer if
        the texts run out of pairs to merge)."""
        if vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(
                f"BPE vocab size must be at least {MIN_VOCAB_SIZE} "
                f"(256 bytes + {EOT}), got {vocab_size}"
            )
        hf = _new_hf_tokenizer()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[AddedToken(EOT, special=True, normalized=False)],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return int(self._hf.get_vocab_size(with_added_tokens=True))

    @property
    def eot_id(self) -> int:
        return self._eot_id

    @property
    def special_ids(self) -> frozenset[int]:
        """The added tokens marked special (`<|endoftext|>`, and any an imported model has)."""
        added = self._hf.get_added_tokens_decoder().items()
        return frozenset({self.eot_id} | {i for i, token in added if token.special})

    def encode(self, text: str) -> list[int]:
        return list(self._hf.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` for many texts at once, in parallel threads."""
        encodings = self._hf.encode_batch(list(texts), add_special_tokens=False)
        return [list(e.ids) for e in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        # Joining raw bytes (rather than hf.decode) keeps decoding exact for every id list,
        # including the separator sitting between multi-byte characters.
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        if not 0 <= token_id < len(self._bytes):
            last = len(self._bytes) - 1
            raise ValueError(f"token id {token_id} outside the vocabulary (0..{last})")
        return self._bytes[token_id]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokenizers_json": self._hf.to_str()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BPETokenizer:
        if data.get("kind") != cls.kind or not isinstance(data.get("tokenizers_json"), str):
            raise ValueError("not a BPE tokenizer description (needs kind 'bpe', tokenizers_json)")
        return cls(HFTokenizer.from_str(data["tokenizers_json"]))

    def _token_byte_table(self) -> list[bytes]:
        to_byte = _unicode_to_byte()
        added = {i: t.content for i, t in self._hf.get_added_tokens_decoder().items()}
        table: list[bytes] = []
        for token_id in range(self.vocab_size):
            token = self._hf.id_to_token(token_id)
            if token is None:
                raise ValueError(f"BPE vocabulary has a gap at id {token_id}")
            if token_id in added:  # special tokens are stored as plain text
                table.append(added[token_id].encode("utf-8"))
            elif all(ch in to_byte for ch in token):
                table.append(bytes(to_byte[ch] for ch in token))
            else:
                raise ValueError(f"token {token!r} is not byte-level: not a byte-level BPE")
        return table

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"
