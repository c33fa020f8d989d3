"""Backend: GGUF models through llama.cpp (`llama-cpp-python`).

llama.cpp computes the logits; MuseGPT's decoder chooses every token, so our samplers,
banned phrases and constraints apply exactly as they do to our own models. One context
serves one row at a time and keeps its KV cache between calls: a prompt that shares a
prefix with the previous one (a retry, the next scene of a story) is not evaluated again.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from musegpt.engines.base import Engine, EngineError
from musegpt.generation.decoder import OverflowPolicy
from musegpt.generation.params import SamplingParams
from musegpt.tokenizer.base import Tokenizer

DEFAULT_CONTEXT = 8192


class LlamaTokenizer(Tokenizer):
    """llama.cpp's tokenizer through MuseGPT's tokenizer contract (byte-exact pieces)."""

    kind: ClassVar[str] = "llama.cpp"

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self._pieces: dict[int, bytes] = {}
        self._vocab_size = int(llama.n_vocab())
        self._eos = int(llama.token_eos())
        self._bos = int(llama.token_bos())
        self.vocab = llama._model.vocab

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def eot_id(self) -> int:
        return self._eos

    def encode(self, text: str) -> list[int]:
        """Ids with the model's beginning-of-sequence token first, as it was trained."""
        ids: list[int] = self.llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        piece = self._pieces.get(token_id)
        if piece is None:
            if token_id in (self._bos, self._eos) or not 0 <= token_id < self._vocab_size:
                piece = b""
            else:
                piece = self._piece(token_id)
            self._pieces[token_id] = piece
        return piece

    def _piece(self, token_id: int) -> bytes:
        """The token's exact bytes (llama.cpp writes them to a buffer and says how many)."""
        import llama_cpp

        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self.vocab, token_id, buffer, size, 0, False)
            if n >= 0:
                return buffer.raw[:n]
            size = -n  # too small: llama.cpp says how much it needs

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.llama.model_path}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokenizer:
        raise EngineError("a llama.cpp tokenizer is loaded with its GGUF model")


class LlamaLogitsSource:
    """Next-token logits from a llama.cpp context, one row, reusing the cached prefix."""

    def __init__(self, llama: Any, context_length: int, reuse_prefix: bool = True) -> None:
        self.llama = llama
        self.reuse_prefix = reuse_prefix
        self.vocab = int(llama.n_vocab())
        self._context_length = context_length

    @property
    def context_length(self) -> int:
        return self._context_length

    def _last_logits(self) -> torch.Tensor:
        pointer = self.llama._ctx.get_logits_ith(-1)
        logits = np.ctypeslib.as_array(pointer, shape=(self.vocab,))
        return torch.from_numpy(logits.copy()).view(1, -1)

    def prefill(self, windows: Sequence[Sequence[int]]) -> torch.Tensor:
        (window,) = windows
        cached = self.llama.input_ids[: self.llama.n_tokens].tolist()
        common = 0
        limit = min(len(cached), len(window) - 1) if self.reuse_prefix else 0
        while common < limit and cached[common] == window[common]:
            common += 1
        self.llama.n_tokens = common  # eval() drops the cache beyond this point
        self.llama.eval(list(window[common:]))
        return self._last_logits()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.llama.eval([int(tokens.view(-1)[0])])
        return self._last_logits()

    def keep_rows(self, rows: Sequence[int]) -> None:
        """One row only: when it finishes, decoding ends; nothing to drop."""

    def room_left(self) -> int:
        return self.context_length - int(self.llama.n_tokens)


class LlamaCppEngine(Engine):
    backend: ClassVar[str] = "llama.cpp"
    max_batch: ClassVar[int | None] = 1

    def __init__(self, llama: Any, name: str, path: str, overflow: OverflowPolicy) -> None:
        super().__init__(name, path, overflow)
        self.llama = llama
        self._tokenizer = LlamaTokenizer(llama)

    @classmethod
    def load(
        cls,
        path: str | Path,
        name: str | None = None,
        context_length: int = DEFAULT_CONTEXT,
        threads: int | None = None,
        overflow: OverflowPolicy = "slide",
    ) -> LlamaCppEngine:
        file = Path(path).expanduser()
        if not file.is_file():
            raise EngineError(f"no GGUF model at {file}")
        with file.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise EngineError(f"{file} is not a GGUF file (it does not start with 'GGUF')")
        try:
            from llama_cpp import Llama
            from llama_cpp._utils import suppress_stdout_stderr
        except ImportError as err:
            raise EngineError(
                "GGUF models need llama-cpp-python: pip install llama-cpp-python"
            ) from err
        try:
            with suppress_stdout_stderr(disable=False):  # llama.cpp logs from C on load
                llama = Llama(
                    model_path=str(file),
                    n_ctx=context_length,
                    n_threads=threads or os.cpu_count() or 1,
                    logits_all=False,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as err:
            raise EngineError(f"llama.cpp could not load {file}: {err}") from err
        return cls(llama, name or file.stem, str(file), overflow)

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def context_length(self) -> int:
        """The context asked for, or what the model was trained on if that is less."""
        return min(int(self.llama.n_ctx()), int(self.llama._model.n_ctx_train()))

    def logits_source(self, params: SamplingParams | None = None) -> LlamaLogitsSource:
        # llama.cpp's numbers depend slightly on how tokens were batched when the cache was
        # filled, so a seeded request re-reads its prompt from scratch: same seed, same text.
        reuse = params is None or params.seed is None
        return LlamaLogitsSource(self.llama, self.context_length, reuse_prefix=reuse)
