"""Data-parallel training across processes (PyTorch DDP, or FSDP: see `sharding`), started by
`torchrun`.

`torchrun --nproc_per_node=N -m musegpt.train ...` (or `torchrun ... $(which musegpt) train`)
sets RANK / WORLD_SIZE / LOCAL_RANK; `setup` sees them and joins the process group: gloo on
CPU, NCCL on CUDA. Without them everything here is a no-op, so single-process code paths
need no special cases.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FSDPModule


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device) -> DistInfo:
    """Join the process group if torchrun started us; return this process's place in it."""
    if not launched_by_torchrun():
        return DistInfo()
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size)


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each process on a multi-GPU machine takes the GPU matching its local rank."""
    if device.type == "cuda" and info.world_size > 1 and device.index is None:
        return torch.device("cuda", info.local_rank)
    return device


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.world_size > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= info.world_size
    return value


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj`, in rank order (a list of one without DDP)."""
    if info.world_size == 1:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's decision, shared by all ranks (so they leave loops together)."""
    if info.world_size == 1:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def gradient_sync(module: nn.Module, sync: bool) -> AbstractContextManager[Any]:
    """A context in which backward passes through `module` (DDP- or FSDP-wrapped) reduce
    gradients across processes only if `sync`: gradient accumulation reduces once, on the
    last micro-batch."""
    if sync:
        return nullcontext()
    if isinstance(module, nn.parallel.DistributedDataParallel):
        return module.no_sync()
    if isinstance(module, FSDPModule):
        return _fsdp_no_sync(module)
    return nullcontext()


@contextmanager
def _fsdp_no_sync(module: FSDPModule) -> Iterator[None]:
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)
