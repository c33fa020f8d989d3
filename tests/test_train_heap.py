"""Training on a CPU keeps freed memory in the heap (`musegpt/train/heap.py`), so a step's
buffers are reused instead of faulted in afresh from the kernel every step.

Each measurement runs in a fresh process, as `musegpt train` does: in the long-lived test
process, a thousand tests' threads, arenas and fragments change what the allocator does
(both tests passed alone and failed late in the full suite)."""

from __future__ import annotations

import multiprocessing
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


def in_fresh_process(work: Callable[..., tuple[float, ...]], *args: object) -> tuple[float, ...]:
    """`work(*args)` in a newly started Python process (bounded: 240 s)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply_async(work, args).get(timeout=240)


def reuse_and_release() -> tuple[float, ...]:
    with retained_heap() as kept:
        working_set()  # the heap grows once
        faults = page_faults(working_set)
        held = resident_bytes()
    return float(kept), float(faults), float(held), float(resident_bytes())


def test_retained_heap_reuses_freed_blocks_and_gives_them_back_after() -> None:
    kept, faults, held, after = in_fresh_process(reuse_and_release)
    assert kept
    pages = 25 * (4 << 20) // resource.getpagesize()
    assert faults < pages // 20
    # The 100 MiB the block kept free in the heap go back to the kernel.
    assert after < held - (64 << 20)


def faults_per_step(folder: Path) -> tuple[float, ...]:
    # The baby config's width and batch: its activations are over glibc's 128 KiB mmap
    # threshold (one layer, to be quick). Start-up, the evaluation and the checkpoint are
    # the same in both runs, so the difference is 40 training steps.
    corpus = write_corpus(folder / "corpus", plain_text(6000, 1), plain_text(1000, 2))
    shape = {"n_layer": 1, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12}

    def run(steps: int, attempt: int = 0) -> Callable[[], object]:
        cfg = tiny(**shape, max_iters=steps, eval_interval=steps, eval_iters=1)
        out = folder / f"r{steps}-{attempt}"
        return lambda: Trainer(cfg, corpus, out, progress=False).run()

    page_faults(run(5))  # lazy initialisation of torch's kernels
    # The fewest of two tries: faults from outside the steps (the checkpoint writer's
    # thread, the allocator's own timing) only ever add (one CI run of three counted 27).
    tries = [(page_faults(run(50, i)) - page_faults(run(10, i))) / 40 for i in range(2)]
    return (min(tries),)


def test_training_steps_on_a_cpu_fault_in_almost_no_pages(tmp_path: Path) -> None:
    (per_step,) = in_fresh_process(faults_per_step, tmp_path)
    assert per_step < 20, f"{per_step:.0f} page faults a training step"
