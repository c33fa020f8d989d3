"""Tokenizers: byte-level BPE and characters, each saved inside the model file."""

from musegpt.tokenizer.base import EOT, Tokenizer, tokenizer_from_json
from musegpt.tokenizer.bpe import BPETokenizer
from musegpt.tokenizer.char import CharTokenizer

__all__ = ["EOT", "BPETokenizer", "CharTokenizer", "Tokenizer", "tokenizer_from_json"]
