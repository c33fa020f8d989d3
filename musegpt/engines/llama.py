"""Backend: GGUF models through llama.cpp (`llama-cpp-python`).

llama.cpp computes the logits; MuseGPT's decoder chooses every token, so our samplers,
banned phrases and constraints apply exactly as they do to our own models. One context
serves one row at a time and keeps its KV cache between calls: a prompt that shares a
prefix with the previous one (a retry, the next scene of a story) is not evaluated again.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from musegpt.engines.base import BackendTokenizer, Engine, EngineError
from musegpt.generation.decoder import OverflowPolicy
from musegpt.generation.params import SamplingParams
from musegpt.tokenizer.base import Tokenizer

DEFAULT_CONTEXT = 8192
# A user-defined token spelling a marker rather than text: `<start_of_image>` (a name with an
# underscore in angle brackets) or `[multimodal]`. HTML tags such as `<table>` are text.
MARKER = re.compile(rb"<[A-Za-z0-9]*_[A-Za-z0-9_]*>|\[[A-Za-z0-9_]+\]")


class LlamaTokenizer(BackendTokenizer):
    """llama.cpp's tokenizer (pieces read from llama.cpp as exact bytes, then cached)."""

    kind: ClassVar[str] = "llama.cpp"

    def __init__(self, llama: Any) -> None:
        super().__init__(int(llama.n_vocab()), int(llama.token_eos()), str(llama.model_path))
        self.llama = llama
        self._pieces: dict[int, bytes] = {}
        self._bos = int(llama.token_bos())
        self.vocab = llama._model.vocab

    def encode(self, text: str) -> list[int]:
        """Ids with the model's beginning-of-sequence token first, as it was trained."""
        ids: list[int] = self.llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        return ids

    @property
    def special_ids(self) -> frozenset[int]:
        return self._kinds[0]

    @property
    def stop_ids(self) -> frozenset[int]:
        return self._kinds[1]

    @cached_property
    def _kinds(self) -> tuple[frozenset[int], frozenset[int]]:
        """(special ids, stop ids) from llama.cpp's token attributes: control, unknown and
        unused tokens, and user-defined ones that spell a marker, are special; the model's
        end-of-generation tokens (end of text, Gemma's `<end_of_turn>`) stop."""
        import llama_cpp

        not_text = (
            llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
            | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
            | llama_cpp.LLAMA_TOKEN_ATTR_UNUSED
        )
        attribute_of = llama_cpp.llama_vocab_get_attr
        special = {self.eot_id, self._bos}
        for token_id in range(self.vocab_size):
            attributes = attribute_of(self.vocab, token_id)
            user_defined = attributes & llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
            if attributes & not_text or (user_defined and MARKER.fullmatch(self._piece(token_id))):
                special.add(token_id)
        # End-of-generation tokens are control tokens (or the end-of-text token itself).
        stops = {t for t in special if llama_cpp.llama_vocab_is_eog(self.vocab, t)}
        return frozenset(special), frozenset(stops | {self.eot_id})

    def token_bytes(self, token_id: int) -> bytes:
        piece = self._pieces.get(token_id)
        if piece is None:
            if token_id in (self._bos, self.eot_id) or not 0 <= token_id < self.vocab_size:
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


CHUNK = 128  # prompt tokens are evaluated in chunks that start at multiples of this


@dataclass
class CacheState:
    """How much of a llama.cpp context's cache can be reused exactly: the positions filled
    by whole prompt chunks. llama.cpp's numbers depend slightly on how tokens were batched,
    so reusing anything else would make the same seed give different text."""

    exact: int = 0


class LlamaLogitsSource:
    """Next-token logits from a llama.cpp context, one row, reusing the cached prefix."""

    def __init__(self, llama: Any, context_length: int, state: CacheState) -> None:
        self.llama = llama
        self.state = state
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
        """Evaluate `window` in chunks aligned to CHUNK, after the longest reusable prefix:
        the result is the same, bit for bit, as evaluating it from scratch."""
        (window,) = windows
        cached = self.llama.input_ids[: self.state.exact].tolist()
        common = 0
        while common < min(len(cached), len(window)) and cached[common] == window[common]:
            common += 1
        start = min(common // CHUNK * CHUNK, (len(window) - 1) // CHUNK * CHUNK)
        self.llama.n_tokens = start  # eval() drops the cache beyond this point
        for begin in range(start, len(window), CHUNK):
            self.llama.eval(list(window[begin : begin + CHUNK]))
        self.state.exact = len(window) // CHUNK * CHUNK
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
        self.cache_state = CacheState()

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
        return LlamaLogitsSource(self.llama, self.context_length, self.cache_state)
