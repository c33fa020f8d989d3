"""Keep freed memory in the process while training on a CPU (Linux with glibc only).

torch's CPU tensors come from `malloc`. glibc serves blocks over its mmap threshold (128 KiB
at first, raised as it sees larger blocks freed) with a fresh `mmap` and unmaps them when
they are freed, and it gives the top of the heap back to the kernel once more than its trim
threshold is free there. A training step frees its activations and gradients and allocates
the same sizes again in the next step, so many of a step's buffers are new pages each
time: a page fault per 4 KiB, in which the kernel also zeroes the page. On the nanoGPT baby
config (768 tokens a step) that was ~920 faults a step compiled, ~770 eager (nanoGPT's own
loop: ~470), and ~4-30 with the heap kept; one-thread CPU time per step fell by 2-2.5 ms
(4-5%, three interleaved pairs of runs; docs/benchmarks.md).

`retained_heap()` raises both thresholds for the duration of a run, so freed blocks stay
in the heap and are reused warm. Afterwards it returns the free memory to the kernel
(`malloc_trim`), so a long-lived process (the server) does not keep a training run's peak,
and leaves the thresholds where glibc's own adaptation takes them in a process that frees
large buffers (32 MiB for mmap, twice that for trimming): setting them by hand turns that
adaptation off for good, and glibc's starting 128 KiB would then fault in every buffer
over 128 KiB afresh (5,500 faults a step instead of ~800 on the baby config). Elsewhere
(macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Where glibc's dynamic mmap threshold stops rising on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX);
# it keeps the trim threshold at twice the mmap threshold.
_ADAPTED_MMAP_THRESHOLD = 32 << 20
_ADAPTED_TRIM_THRESHOLD = 2 * _ADAPTED_MMAP_THRESHOLD
# Blocks up to this size come from the heap while training: a step's largest buffers on
# CPU-sized models (a 30M model's logits for 4,096 tokens are 134 MB and stay mmapped, but
# they are few and their matrix products dwarf the faults).
_RETAINED_MMAP_THRESHOLD = 64 << 20
# Free memory at the top of the heap is kept up to this much.
_RETAINED_TRIM_THRESHOLD = 1 << 30


def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


_libc = _glibc()
# Whether `retained_heap` can do anything here.
AVAILABLE = _libc is not None


@contextmanager
def retained_heap() -> Iterator[bool]:
    """Keep freed memory in the heap inside the block; yields whether it could (glibc)."""
    if _libc is None:
        yield False
        return
    kept = bool(_libc.mallopt(_M_MMAP_THRESHOLD, _RETAINED_MMAP_THRESHOLD)) and bool(
        _libc.mallopt(_M_TRIM_THRESHOLD, _RETAINED_TRIM_THRESHOLD)
    )
    try:
        yield kept
    finally:
        _libc.mallopt(_M_MMAP_THRESHOLD, _ADAPTED_MMAP_THRESHOLD)
        _libc.mallopt(_M_TRIM_THRESHOLD, _ADAPTED_TRIM_THRESHOLD)
        _libc.malloc_trim(0)
