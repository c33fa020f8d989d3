"""Backend: a local Hugging Face causal-LM folder, through `transformers` (never a hub)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import torch

from musegpt.engines.base import BackendTokenizer, Engine, EngineError
from musegpt.generation.decoder import OverflowPolicy
from musegpt.generation.params import SamplingParams
from musegpt.tokenizer.base import Tokenizer

MAX_CONTEXT = 8192  # a cap on what the KV cache may grow to, whatever the config claims
BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for bytes, reversed (byte-level BPE vocabularies)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


class PretrainedTokenizer(BackendTokenizer):
    """A `transformers` tokenizer (its vocabulary may be narrower than the model's output)."""

    kind: ClassVar[str] = "transformers"

    def __init__(self, tokenizer: Any, vocab_size: int, eos_id: int) -> None:
        super().__init__(vocab_size, eos_id, str(tokenizer.name_or_path))
        self.hf = tokenizer
        bos = tokenizer.bos_token_id
        # Models whose BOS differs from EOS (Llama, Gemma, ...) expect it before a prompt.
        self.bos_id: int | None = bos if bos is not None and bos != eos_id else None
        added = getattr(tokenizer, "added_tokens_decoder", {})
        marked = {i for i, token in added.items() if getattr(token, "special", False)}
        self.special = {*tokenizer.all_special_ids, *marked}

    @property
    def special_ids(self) -> frozenset[int]:
        """The tokenizer's special tokens (`all_special_ids` and added tokens marked special),
        and the model's outputs past the tokenizer's last id (padding: no token at all)."""
        padding = range(len(self.hf), self.vocab_size)
        return frozenset({*self.special, *padding, self.eot_id})

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.hf.encode(text, add_special_tokens=False)
        return ids if self.bos_id is None else [self.bos_id, *ids]

    def token_bytes(self, token_id: int) -> bytes:
        return self._table[token_id] if 0 <= token_id < len(self._table) else b""

    @cached_property
    def _table(self) -> list[bytes]:
        pieces = self.hf.convert_ids_to_tokens(list(range(len(self.hf))))
        decoder = json.loads(self.hf.backend_tokenizer.to_str()).get("decoder") or {}
        byte_level = "ByteLevel" in json.dumps(decoder)
        to_byte = _byte_decoder()
        table: list[bytes] = []
        for token_id, piece in enumerate(pieces):
            match = BYTE_TOKEN.match(piece or "")
            if token_id in self.special or piece is None:
                table.append(b"")
            elif match:
                table.append(bytes([int(match.group(1), 16)]))
            elif byte_level and all(c in to_byte for c in piece):
                table.append(bytes(to_byte[c] for c in piece))
            else:
                table.append(piece.replace("▁", " ").encode("utf-8"))
        return table


class HFLogitsSource:
    """One row at a time with the model's own KV cache."""

    def __init__(self, model: Any, context_length: int) -> None:
        self.model = model
        self._context_length = context_length
        self.past: Any = None
        self.length = 0

    @property
    def context_length(self) -> int:
        return self._context_length

    @torch.no_grad()
    def prefill(self, windows: Sequence[Sequence[int]]) -> torch.Tensor:
        (window,) = windows
        out = self.model(torch.tensor([list(window)]), use_cache=True)
        self.past, self.length = out.past_key_values, len(window)
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model(tokens.view(1, 1), past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        self.length += 1
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits

    def keep_rows(self, rows: Sequence[int]) -> None:
        """One row only: when it finishes, decoding ends; nothing to drop."""

    def room_left(self) -> int:
        return self._context_length - self.length


class HFEngine(Engine):
    backend: ClassVar[str] = "transformers"
    max_batch: ClassVar[int | None] = 1

    def __init__(
        self,
        model: Any,
        tokenizer: PretrainedTokenizer,
        name: str,
        path: str,
        overflow: OverflowPolicy,
    ) -> None:
        super().__init__(name, path, overflow)
        self.model = model.eval()
        self._tokenizer = tokenizer
        config = model.config
        limit = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        self._context_length = min(int(limit or MAX_CONTEXT), MAX_CONTEXT)

    @classmethod
    def load(
        cls,
        path: str | Path,
        name: str | None = None,
        device: str = "cpu",
        overflow: OverflowPolicy = "slide",
    ) -> HFEngine:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from musegpt.model.hf_gpt2 import quiet_transformers

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise EngineError(f"{folder} is not a Hugging Face model folder (no config.json)")
        try:
            with quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                model: Any = AutoModelForCausalLM.from_pretrained(
                    folder, local_files_only=True, dtype=torch.float32
                )
                model = model.to(device)
        except (OSError, ValueError, KeyError) as err:
            raise EngineError(f"could not load the Hugging Face model at {folder}: {err}") from err
        eos = (
            tokenizer.eos_token_id
            if tokenizer.eos_token_id is not None
            else model.config.eos_token_id
        )
        if eos is None:
            raise EngineError(f"the model at {folder} names no end-of-text token (eos_token_id)")
        width = int(model.get_output_embeddings().weight.shape[0])
        wrapped = PretrainedTokenizer(tokenizer, width, int(eos))
        return cls(model, wrapped, name or folder.name, str(folder), overflow)

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def context_length(self) -> int:
        return self._context_length

    def logits_source(self, params: SamplingParams | None = None) -> HFLogitsSource:
        return HFLogitsSource(self.model, self._context_length)
