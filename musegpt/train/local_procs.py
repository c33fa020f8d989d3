"""`procs: N`: data-parallel training in N processes on this machine, one batch shared.

On a CPU, one process with two threads splits every operation of a step across the
threads and meets at a barrier after each (hundreds a step); small kernels (a layer norm, a
GELU over 12 x 64 x 512 values) barely gain from a second thread. Two one-thread processes
instead each train on half of every batch and meet once a step, to average the gradients
(gloo; DistributedDataParallel). Here the workers are started with the environment
`torchrun` would give them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so
`distributed.setup` joins them just as under torchrun.

Unlike a torchrun launch, where `batch_size` is per process, `batch_size` here stays the
*global* batch: each process takes `batch_size / procs` rows of the same windows one
process would draw (see `BatchSampler`), the gradients are averaged, so the run trains on
the same batches with the same updates as a single process, up to float rounding.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.multiprocessing as mp
from rich.console import Console
from torch.multiprocessing.spawn import (
    ProcessExitedException,
    ProcessRaisedException,
    start_processes,
)

if TYPE_CHECKING:
    from musegpt.model.gpt import GPT
    from musegpt.tokenizer.base import Tokenizer
    from musegpt.train.trainer import ModelAdapter, TrainResult

# Set in the workers: their config's batch_size is the global batch.
WORKER_ENV = "MUSEGPT_LOCAL_PROCS"


def in_worker() -> bool:
    """Whether this process is one of the workers that `run` started."""
    return WORKER_ENV in os.environ


def rows_per_process(batch_size: int, procs: int) -> int:
    """This process's share of each batch: the global batch split among `procs` local
    workers, or all of it otherwise (one process, or a torchrun launch)."""
    return batch_size // procs if in_worker() else batch_size


def threads_per_process(procs: int) -> int:
    """The cores this process may use, shared among the workers (at least one each)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // procs)


@dataclass
class _Job:
    """What a worker needs to build its Trainer (sent to it by pickling)."""

    config: Any  # TrainConfig
    corpus: Path
    out_dir: Path
    model: GPT | None
    tokenizer: Tokenizer | None
    adapter: ModelAdapter | None
    resume: bool
    progress: bool
    stderr: bool  # rank 0's console writes to stderr, as the caller's did


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _worker(rank: int, procs: int, port: int, job: _Job, results: Any) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(procs),
            "LOCAL_WORLD_SIZE": str(procs),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            WORKER_ENV: str(procs),
        }
    )
    if not job.config.threads:
        torch.set_num_threads(threads_per_process(procs))
    from musegpt.train.trainer import Trainer

    try:
        result = Trainer(
            job.config,
            job.corpus,
            job.out_dir,
            model=job.model,
            tokenizer=job.tokenizer,
            adapter=job.adapter,
            resume=job.resume,
            progress=job.progress,
            console=Console(stderr=job.stderr),
        ).run()
    except BaseException as error:
        # The parent raises the worker's own error (a clear message), not spawn's wrapper;
        # raising here too makes spawn stop the other workers, which would otherwise wait
        # for this one in a collective.
        results.put(error)
        raise
    if rank == 0:
        results.put(result)


def run(
    config: Any,
    corpus: Path,
    out_dir: Path,
    *,
    model: GPT | None,
    tokenizer: Tokenizer | None,
    adapter: ModelAdapter | None,
    resume: bool,
    progress: bool,
    console: Console,
) -> TrainResult:
    """Train in `config.procs` local worker processes; returns rank 0's result, or raises
    the first error a worker raised."""
    procs = int(config.procs)
    job = _Job(config, corpus, out_dir, model, tokenizer, adapter, resume, progress, console.stderr)
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    workers = start_processes(  # type: ignore[no-untyped-call]
        _worker,
        args=(procs, _free_port(), job, results),
        nprocs=procs,
        join=False,
        start_method="spawn",
    )
    try:
        while not workers.join():
            pass
    except (ProcessRaisedException, ProcessExitedException) as failure:
        if not results.empty():
            error = results.get()
            if isinstance(error, BaseException):
                raise error from None
        raise RuntimeError(f"a training process failed: {failure}") from None
    except BaseException:  # e.g. Ctrl-C: the workers got it too; do not leave them behind
        for process in workers.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        raise
    outcome = results.get() if not results.empty() else None
    if isinstance(outcome, BaseException):  # pragma: no cover - a worker failed, yet exited 0
        raise outcome
    if outcome is None:  # pragma: no cover
        raise RuntimeError("the training processes ended without a result")
    return outcome  # type: ignore[no-any-return]
