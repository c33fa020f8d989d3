"""Backend: GGUF models through llama.cpp (`llama-cpp-python`).

llama.cpp computes the logits; MuseGPT's decoder chooses every token, so our samplers,
banned phrases and constraints apply exactly as they do to our own models. One context
keeps its KV cache between calls: a prompt that shares a prefix with the previous one (a
retry, the next scene of a story) is not evaluated again. It decodes up to `ROWS` rows at
once (a story chapter's two opening drafts), each a llama.cpp sequence sharing the
prompt's cache: on this CPU a 2-row step costs about 1.35x a 1-row one (measured).

Threads: llama.cpp's threads meet at a spinning barrier after every operation of the
graph, so when one of them is not running (another program holds its core) the others
wait for it, hundreds of times a token: on 2 busy cores 2 threads decoded 1-2 tokens/s
where 1 thread decoded 9-14 (measured). Unless a fixed count is asked for, each decode
uses the cores that other programs leave free (`ThreadBudget`), re-checked as it goes;
llama.cpp's logits do not depend on its thread count, so the text does not either. The
decoder's own work on the logits runs on one torch thread (`sampling_threads`), so no
torch worker spins on a core that llama.cpp needs.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
        self._buffer = ctypes.create_string_buffer(64)
        self._buffer_lock = threading.Lock()

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

    def all_token_bytes(self) -> list[bytes]:
        """Every token's bytes (as `token_bytes` gives them), read in one loop with a buffer
        of its own: the vocabulary tables read all 262,144 of Gemma's, which one
        `token_bytes` call at a time cost 0.6 s of CPU, about twice this."""
        import llama_cpp

        read, vocab, none = llama_cpp.llama_token_to_piece, self.vocab, (self._bos, self.eot_id)
        buffer = ctypes.create_string_buffer(256)
        pieces: list[bytes] = []
        for token_id in range(self.vocab_size):
            n = read(vocab, token_id, buffer, 256, 0, False)
            if token_id in none:
                pieces.append(b"")
            else:  # a piece longer than the buffer (none in Gemma's) is read on its own
                pieces.append(buffer.raw[:n] if n >= 0 else self._piece(token_id))
        return pieces

    def _piece(self, token_id: int) -> bytes:
        """The token's exact bytes (llama.cpp writes them to a buffer and says how many).
        One buffer serves every call (tables over the whole vocabulary read 262,144), one
        thread at a time."""
        import llama_cpp

        with self._buffer_lock:
            while True:
                buffer = self._buffer
                size = len(buffer)
                n = llama_cpp.llama_token_to_piece(self.vocab, token_id, buffer, size, 0, False)
                if n >= 0:
                    return buffer.raw[:n]
                self._buffer = ctypes.create_string_buffer(-n)  # as llama.cpp says it needs


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average, or None where the system does not report one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def running_now() -> int | None:
    """Threads runnable on the whole machine at this instant (this one included), or None
    where the system does not say (Linux's /proc/loadavg does)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (Linux's /proc/stat), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    idle = fields[3] + fields[4]  # idle and waiting for I/O
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


FRESH_SECONDS = 10.0  # an older look says nothing about the machine now
LOAD_TIME_CONSTANT = 60.0  # seconds: the 1-minute load average decays like this


@dataclass
class ThreadBudget:
    """How many threads llama.cpp should use now: the cores other programs leave free.

    Other programs' share of the machine is read, in order of preference:
    - during a decode, from the machine's busy CPU time since the last look (Linux's
      /proc/stat) less this process's own: exact over the last few tokens, and it forgets
      a program that has stopped at once (the 1-minute load average would keep a finished
      run's load for a minute and halve the next decode's speed on an idle machine);
    - at a decode's start, from the threads runnable right now less this decode's own;
    - where neither is reported, from the 1-minute load average less this process's own
      share (its CPU time per second, averaged the way the load average is).
    Too many threads cost far more than too few (a thread left waiting stalls every
    barrier; one thread short loses at most its share), so a core counts as free only
    when at least 3/4 of it is."""

    most: int  # never more threads than this
    cores: int = field(default_factory=usable_cores)
    read_load: Callable[[], float | None] = load_average
    read_running: Callable[[], int | None] = running_now
    read_busy: Callable[[], float | None] = machine_busy_seconds
    cpu_clock: Callable[[], float] = time.process_time
    wall_clock: Callable[[], float] = time.monotonic
    own_load: float = 0.0
    _cpu: float = field(init=False)
    _time: float = field(init=False)
    _busy: tuple[float, float, float] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._cpu, self._time = self.cpu_clock(), self.wall_clock()

    def _others_lately(self) -> float | None:
        """Cores other programs kept busy since the last look, if that was recent."""
        busy, now, cpu = self.read_busy(), self.wall_clock(), self.cpu_clock()
        last, self._busy = self._busy, (busy, now, cpu) if busy is not None else None
        if busy is None or last is None or not 0 < now - last[1] <= FRESH_SECONDS:
            return None
        return ((busy - last[0]) - (cpu - last[2])) / (now - last[1])

    def _update_own_load(self) -> None:
        now, cpu = self.wall_clock(), self.cpu_clock()
        elapsed = now - self._time
        if elapsed <= 0:
            return
        weight = math.exp(-elapsed / LOAD_TIME_CONSTANT)
        rate = (cpu - self._cpu) / elapsed
        self.own_load = weight * self.own_load + (1 - weight) * rate
        self._cpu, self._time = cpu, now

    def threads(self, current: int) -> int:
        """The thread count to use next, for a decode now running `current` threads (its
        own, counted among the runnable ones: the caller and llama.cpp's workers)."""
        self._update_own_load()
        others = self._others_lately()
        if others is None:
            load, running = self.read_load(), self.read_running()
            if running is not None:
                others = running - max(current, 1)
            elif load is not None:
                others = load - self.own_load
            else:
                return max(min(self.most, self.cores), 1)
        free = math.floor(self.cores - max(others, 0.0) + 0.25)
        return max(min(free, self.most), 1)


CHUNK = 128  # prompt tokens are evaluated in chunks that start at multiples of this


@dataclass
class CacheState:
    """How much of a llama.cpp context's cache can be reused exactly: the positions filled
    by whole prompt chunks. llama.cpp's numbers depend slightly on how tokens were batched,
    so reusing anything else would make the same seed give different text."""

    exact: int = 0
    # The window last evaluated in chunks, and the logits after its last token: the same
    # window again (a plan line redrawn with a new seed: a Chinese story re-evaluated its
    # prompt's last chunk 12 times, 2.7 s) is only cut back to, its cells left as they are.
    prompt: tuple[int, ...] = ()
    logits: torch.Tensor | None = None


ROWS = 2  # sequences one context decodes at once (a chapter's two opening drafts)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    common = 0
    for have, want in zip(a, b, strict=False):
        if have != want:
            break
        common += 1
    return common


class LlamaLogitsSource:
    """Next-token logits from a llama.cpp context, reusing the cached prefix.

    Row 0 is llama.cpp's sequence 0, driven through `Llama.eval` (which keeps its record of
    the cached tokens, `input_ids`, for the next call to reuse). Further rows are sequences
    1, 2, … of the same context: each starts from a copy of sequence 0's cached prompt (a
    copy shares the cache cells; nothing is evaluated again) and steps together with it in
    one `llama_decode` batch. A step's logits are a view of llama.cpp's own buffer (no copy
    of 262,144 floats a row): valid until the next `prefill` or `step`, which the decoder
    never outlives (it chooses the token before asking for more; processors never write to
    their input). Several rows' logits after a prefill are a copy.

    A batch's numbers are not bit for bit those of one row at a time (llama.cpp multiplies a
    batch by another kernel: logits differ by up to ~0.7, measured), so the same request
    always goes the same way: `n` rows in one batch when the engine takes them."""

    sampling_threads = 1  # the decoder's torch work runs on one thread (see the module)
    RECHECK_STEPS = 16  # decode steps between two looks at the machine's load

    def __init__(
        self, llama: Any, context_length: int, state: CacheState, budget: ThreadBudget | None
    ) -> None:
        self.llama = llama
        self.state = state
        self.vocab = int(llama.n_vocab())
        self._context_length = context_length
        self.budget = budget
        self._steps = 0
        self.prefilled: int | None = None  # the window this decode last evaluated in chunks
        self.seqs = [0]  # the llama.cpp sequence of each row
        # Sequences other than 0: their cached tokens, where their stepping began, and the
        # logits after their last token (a rebuild that keeps a row as it is reuses them).
        self.tokens: dict[int, list[int]] = {}
        self.begun: dict[int, int] = {}
        self.shared: dict[int, int] = {}  # positions whose cells are sequence 0's, copied
        self.latest: dict[int, torch.Tensor] = {}
        self._batch: Any = None
        self._started = False
        self._use_free_cores()

    @property
    def context_length(self) -> int:
        """The context's cells, shared equally by the rows decoded together (a window slid
        to half of this leaves each row room to go on)."""
        return self._context_length // len(self.seqs)

    @property
    def threads(self) -> int:
        """llama.cpp's thread count for the next evaluation."""
        import llama_cpp

        return int(llama_cpp.llama_n_threads(self.llama._ctx.ctx))

    def _use_free_cores(self) -> None:
        if self.budget is None:
            return
        current = self.threads
        threads = self.budget.threads(current)
        if threads != current:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self.llama._ctx.ctx, threads, threads)

    def _logits(self, index: int = -1) -> torch.Tensor:
        """The logits (1, vocab) of the `index`-th output of the last evaluation (a view)."""
        pointer = self.llama._ctx.get_logits_ith(index)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(1, self.vocab)))

    def _last_logits(self) -> torch.Tensor:
        return self._logits(-1)

    @property
    def _memory(self) -> Any:
        import llama_cpp

        return llama_cpp.llama_get_memory(self.llama._ctx.ctx)

    def _cached(self, seq: int) -> list[int]:
        """The tokens in sequence `seq`'s cache."""
        if seq == 0:
            return [int(t) for t in self.llama.input_ids[: int(self.llama.n_tokens)]]
        return self.tokens.get(seq, [])

    def prefill(self, windows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Evaluate each row's window after the longest reusable prefix of its cache: the
        result is the same, bit for bit, as evaluating it from scratch (see `_prefill_0`). A
        decode's first prefill puts its rows in sequences 0, 1, …; a later one (a rebuild
        after a take-back) goes on in the rows' own sequences."""
        import llama_cpp

        if not self._started:
            self._started = True
            self.seqs = list(range(len(windows)))
            if len(windows) > ROWS:
                raise ValueError(f"llama.cpp decodes at most {ROWS} rows at once")
            for seq in range(1, ROWS):  # what an earlier decode left in the other sequences
                llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)
        if self.seqs == [0]:
            (window,) = windows
            return self._prefill_0(window)
        # A row a rebuild leaves as it was keeps the logits of its last step: copied now,
        # before evaluating the others overwrites llama.cpp's buffer.
        kept = {
            seq: self.latest[seq].clone()
            for seq, window in zip(self.seqs, windows, strict=True)
            if seq in self.latest and self._cached(seq) == list(window)
        }
        rows: list[torch.Tensor] = []
        for seq, window in zip(self.seqs, windows, strict=True):
            if seq in kept:
                rows.append(kept[seq])
            elif seq == 0:
                rows.append(self._prefill_0(window).clone())
            elif list(window) == list(windows[0]) and self.seqs[0] == 0:
                # A second sample of row 0's prompt: a copy of its cache, cells shared.
                llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)
                llama_cpp.llama_memory_seq_cp(self._memory, 0, seq, -1, -1)
                self.tokens[seq], self.begun[seq] = list(window), len(window)
                self.shared[seq] = len(window)
                rows.append(rows[0])
            else:
                rows.append(self._prefill_other(seq, list(window)).clone())
        self.latest = dict(zip(self.seqs, rows, strict=True))
        return torch.cat(rows)

    def _prefill_0(self, window: Sequence[int]) -> torch.Tensor:
        """Sequence 0: evaluate `window` in chunks aligned to CHUNK, after the longest
        reusable prefix. A window that takes back tokens this decode stepped through (a
        banned phrase's backtrack) is only rewound: see `_rewind`."""
        import llama_cpp

        if self._rewind(window):
            return self._last_logits()
        self.prefilled = len(window)
        state, key = self.state, tuple(int(t) for t in window)
        same = state.prompt == key and tuple(self._cached(0)[: len(window)]) == key
        if same and state.logits is not None:
            # The cells past it go now (eval() would drop them only at the next step: a
            # second row copied from this one would take them along).
            llama_cpp.llama_memory_seq_rm(self._memory, 0, len(window), -1)
            self.llama.n_tokens = len(window)
            return state.logits
        start = self._chunk_start(window)
        self.llama.n_tokens = start  # eval() drops the cache beyond this point
        for begin in range(start, len(window), CHUNK):
            self.llama.eval(list(window[begin : begin + CHUNK]))
        state.exact = len(window) // CHUNK * CHUNK
        state.prompt, state.logits = key, self._last_logits().clone()
        return state.logits

    def _chunk_start(self, window: Sequence[int]) -> int:
        """Where evaluating `window` begins: the end of the longest prefix it shares with
        sequence 0's exactly cached chunks, cut back to a chunk boundary (and before the
        window's last chunk, whose logits are wanted)."""
        common = common_prefix(self.llama.input_ids[: self.state.exact].tolist(), window)
        return min(common // CHUNK * CHUNK, (len(window) - 1) // CHUNK * CHUNK)

    def _prefill_other(self, seq: int, window: list[int]) -> torch.Tensor:
        """Sequence `seq` (not 0): rewound (as `_rewind`), or evaluated in chunks after the
        exact prefix it shares with sequence 0's cache (a copy, cells shared)."""
        import llama_cpp

        memory, cached = self._memory, self.tokens.get(seq, [])
        keep = self._stepped_prefix(cached, window, self.begun.get(seq, len(window)))
        if keep is not None:
            llama_cpp.llama_memory_seq_rm(memory, seq, keep, -1)
            self.tokens[seq] = window[:keep]
            return self._evaluate({seq: window[keep:]})[0:1]
        llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
        start = self._chunk_start(window)
        if start:
            llama_cpp.llama_memory_seq_cp(memory, 0, seq, 0, start)
        self.tokens[seq], self.begun[seq] = window[:start], len(window)
        self.shared[seq] = start
        logits = torch.empty(0)
        for begin in range(start, len(window), CHUNK):
            logits = self._evaluate({seq: window[begin : begin + CHUNK]})[0:1]
        return logits

    def _evaluate(self, tokens: dict[int, list[int]]) -> torch.Tensor:
        """Append `tokens[seq]` to each sequence's cache in one llama.cpp batch; the logits
        after each sequence's last token, (sequences, vocab) in the order given, a view of
        llama.cpp's buffer. Sequence 0's record (`input_ids`, `n_tokens`) is kept as
        `Llama.eval` keeps it."""
        import llama_cpp

        size = sum(len(t) for t in tokens.values())
        if self._batch is None or self._batch[1] < size:
            batch = llama_cpp.llama_batch_init(max(size, CHUNK), 0, 1)
            self._batch = (batch, max(size, CHUNK))
            weakref.finalize(self, llama_cpp.llama_batch_free, batch)
        batch = self._batch[0]
        batch.n_tokens = size
        at = 0
        for seq, new in tokens.items():
            begin = int(self.llama.n_tokens) if seq == 0 else len(self.tokens[seq])
            for k, token in enumerate(new):
                batch.token[at], batch.pos[at], batch.n_seq_id[at] = token, begin + k, 1
                batch.seq_id[at][0] = seq
                batch.logits[at] = k == len(new) - 1
                at += 1
        if 0 in tokens:  # as eval() does: nothing of sequence 0 past llama.cpp's record
            llama_cpp.llama_memory_seq_rm(self._memory, 0, int(self.llama.n_tokens), -1)
        code = llama_cpp.llama_decode(self.llama._ctx.ctx, batch)
        if code != 0:
            raise EngineError(f"llama.cpp could not decode a batch of {size} tokens ({code})")
        for seq, new in tokens.items():
            if seq == 0:
                n = int(self.llama.n_tokens)
                self.llama.input_ids[n : n + len(new)] = new
                self.llama.n_tokens = n + len(new)
            else:
                self.tokens[seq].extend(new)
        # Only each sequence's last token has logits: the outputs, in the order given.
        pointer = self.llama._ctx.get_logits()
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(len(tokens), self.vocab)))

    def _rewind(self, window: Sequence[int]) -> bool:
        """Whether `window` is the cache cut back inside the tokens this decode evaluated
        one step at a time (or, in a batch whose other row took back, that cache and the
        token just chosen); if so, the cache is cut there and the rest evaluated as steps
        are: the same logits, bit for bit, where evaluating the window again in chunks cost
        every token stepped through since the prompt's last chunk (a Chinese story spent a
        third of its chapters' llama.cpp time on that)."""
        if self.prefilled is None:
            return False
        keep = self._stepped_prefix(self._cached(0), window, self.prefilled)
        if keep is None:
            return False
        self.llama.n_tokens = keep  # eval() drops the cache from here
        self.llama.eval([int(t) for t in window[keep:]])
        return True

    @staticmethod
    def _stepped_prefix(cached: list[int], window: Sequence[int], begun: int) -> int | None:
        """How much of `cached` a rebuild to `window` keeps, when the window is the cache cut
        back after `begun` (where this decode's steps began) or the cache and one token
        more: at least the window's last token is evaluated again, for its logits."""
        if not begun < len(window) <= len(cached) + 1:
            return None
        common = common_prefix(cached, window)
        keep = min(common, len(window) - 1)
        return keep if keep >= begun and common == min(len(window), len(cached)) else None

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self._steps += 1
        if self._steps % self.RECHECK_STEPS == 0:
            self._use_free_cores()
        chosen = [int(t) for t in tokens.view(-1).tolist()]
        if self.seqs == [0]:
            self.llama.eval(chosen)
            return self._last_logits()
        logits = self._evaluate({seq: [t] for seq, t in zip(self.seqs, chosen, strict=True)})
        # Views, for a rebuild that keeps a row as it is (see `prefill`).
        self.latest = {seq: logits[i : i + 1] for i, seq in enumerate(self.seqs)}
        return logits

    def keep_rows(self, rows: Sequence[int]) -> None:
        """Rows that finished leave the batch; their sequences' caches stay until the next
        decode (sequence 0's is the prefix that decode may reuse)."""
        self.seqs = [self.seqs[row] for row in rows]

    def room_left(self) -> int:
        """Tokens each row can still append: the cells no sequence holds, shared out (a
        copied prompt's cells count once)."""
        if self.seqs == [0]:
            return self._context_length - int(self.llama.n_tokens)
        used = int(self.llama.n_tokens) + sum(
            len(tokens) - self.shared.get(seq, 0) for seq, tokens in self.tokens.items()
        )
        return (self._context_length - used) // len(self.seqs)


_LOADING = threading.Lock()


def cpu_backend_has_amx() -> bool:
    """Whether llama.cpp's CPU backend was built with AMX and runs on a CPU that has it."""
    import llama_cpp

    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace")


@contextmanager
def loading_defaults(rows: int = 1) -> Iterator[None]:
    """While it lasts, a new `Llama` (which has no argument for these) is loaded with:

    - a context of `rows` sequences in one cache, each of which may use the whole context
      (one row's logits are those of a context of one sequence: bit for bit where the
      weights are repacked, measured; near, the same likeliest tokens, in plain buffers);
    - on a CPU with AMX, its weights in plain CPU buffers: llama.cpp's AMX buffers crash
      Q4_K models on some Sapphire Rapids machines (a segfault in `ggml_backend_amx_mul_mat`
      at the first decode, llama.cpp issue 20824; seen with the default model here), so the
      extra buffer types (AMX and the weight repacking that comes with them) stay off there.

    llama-cpp-python reads its defaults from `llama_context_default_params` and
    `llama_model_default_params`, so those are what is wrapped."""
    import llama_cpp.llama_cpp as bindings

    context_defaults = bindings.llama_context_default_params
    model_defaults = bindings.llama_model_default_params
    plain_buffers = cpu_backend_has_amx()

    def context_params() -> Any:
        params = context_defaults()
        if rows > 1:
            params.n_seq_max, params.kv_unified = rows, True
        return params

    def model_params() -> Any:
        params = model_defaults()
        if plain_buffers:
            params.use_extra_bufts = False
        return params

    with _LOADING:
        bindings.llama_context_default_params = context_params
        bindings.llama_model_default_params = model_params
        try:
            yield
        finally:
            bindings.llama_context_default_params = context_defaults
            bindings.llama_model_default_params = model_defaults


class LlamaCppEngine(Engine):
    backend: ClassVar[str] = "llama.cpp"
    max_batch: ClassVar[int | None] = ROWS

    def __init__(
        self,
        llama: Any,
        name: str,
        path: str,
        overflow: OverflowPolicy,
        threads: int | None = None,
    ) -> None:
        """`threads`: llama.cpp's thread count, fixed; None: the cores other programs leave
        free, chosen per decode (see `ThreadBudget`)."""
        super().__init__(name, path, overflow)
        self.llama = llama
        self._tokenizer = LlamaTokenizer(llama)
        self.cache_state = CacheState()
        self.thread_budget = None if threads else ThreadBudget(usable_cores())
        self.adapter: str | None = None  # the GGUF LoRA file applied, if any

    @classmethod
    def load(
        cls,
        path: str | Path,
        name: str | None = None,
        context_length: int = DEFAULT_CONTEXT,
        threads: int | None = None,
        overflow: OverflowPolicy = "slide",
        lora_path: str | Path | None = None,
        lora_scale: float = 1.0,
    ) -> LlamaCppEngine:
        """`lora_path`: a GGUF LoRA adapter applied on top (scaled by `lora_scale`)."""
        file = Path(path).expanduser()
        adapter = Path(lora_path).expanduser() if lora_path is not None else None
        for what in (file, adapter):
            if what is None:
                continue
            if not what.is_file():
                raise EngineError(f"no GGUF {'adapter' if what is adapter else 'model'} at {what}")
            with what.open("rb") as f:
                if f.read(4) != b"GGUF":
                    raise EngineError(f"{what} is not a GGUF file (it does not start with 'GGUF')")
        try:
            from llama_cpp import Llama
            from llama_cpp._utils import suppress_stdout_stderr
        except ImportError as err:
            raise EngineError(
                "GGUF models need llama-cpp-python: pip install llama-cpp-python"
            ) from err
        try:
            with suppress_stdout_stderr(disable=False), loading_defaults(ROWS):  # it logs on load
                llama = Llama(
                    model_path=str(file),
                    n_ctx=context_length,
                    n_threads=threads or usable_cores(),
                    n_threads_batch=threads or usable_cores(),
                    logits_all=False,
                    lora_path=str(adapter) if adapter else None,
                    lora_scale=lora_scale,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as err:
            with_adapter = f" with the adapter {adapter}" if adapter else ""
            raise EngineError(f"llama.cpp could not load {file}{with_adapter}: {err}") from err
        engine = cls(llama, name or file.stem, str(file), overflow, threads)
        engine.adapter = str(adapter) if adapter else None
        return engine

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def context_length(self) -> int:
        """The context asked for, or what the model was trained on if that is less."""
        return min(int(self.llama.n_ctx()), int(self.llama._model.n_ctx_train()))

    def logits_source(self, params: SamplingParams | None = None) -> LlamaLogitsSource:
        return LlamaLogitsSource(
            self.llama, self.context_length, self.cache_state, self.thread_budget
        )
