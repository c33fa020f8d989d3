"""Training on a CPU keeps freed memory in the heap (`musegpt/train/heap.py`), so a step's
buffers are reused instead of faulted in afresh from the kernel every step."""

from __future__ import annotations

import resource
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_train import plain_text, tiny, write_corpus

from musegpt.train import Trainer
from musegpt.train.heap import AVAILABLE, retained_heap

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="needs glibc's mallopt (Linux with glibc)")


def page_faults(work: Callable[[], object]) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    work()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def working_set() -> None:
    """What a training step does to the allocator: many large buffers alive at once, all
    freed at the end, made again the next step (here 25 x 4 MiB)."""
    buffers = [torch.ones(1 << 20) for _ in range(25)]
    del buffers


def test_retained_heap_reuses_freed_blocks_and_gives_them_back_after() -> None:
    with retained_heap() as kept:
        assert kept
        working_set()  # the heap grows once
        pages = 25 * (4 << 20) // resource.getpagesize()
        assert page_faults(working_set) < pages // 20
        held = resident_bytes()
    # The 100 MiB the block kept free in the heap go back to the kernel.
    assert resident_bytes() < held - (64 << 20)


def test_training_steps_on_a_cpu_fault_in_almost_no_pages(tmp_path: Path) -> None:
    # The baby config's width and batch: its activations are over glibc's 128 KiB mmap
    # threshold (one layer, to be quick). Start-up, the evaluation and the checkpoint are
    # the same in both runs, so the difference is 40 training steps.
    corpus = write_corpus(tmp_path / "corpus", plain_text(6000, 1), plain_text(1000, 2))
    shape = {"n_layer": 1, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12}

    def run(steps: int) -> Callable[[], object]:
        cfg = tiny(**shape, max_iters=steps, eval_interval=steps, eval_iters=1)
        return lambda: Trainer(cfg, corpus, tmp_path / f"r{steps}", progress=False).run()

    page_faults(run(5))  # lazy initialisation of torch's kernels
    per_step = (page_faults(run(50)) - page_faults(run(10))) / 40
    assert per_step < 20, f"{per_step:.0f} page faults a training step"
