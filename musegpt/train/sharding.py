"""Fully sharded data parallel training (PyTorch FSDP2, `fully_shard`), for `fsdp: true`.

DDP keeps a whole copy of the weights, gradients and AdamW state on every process; FSDP
splits all three across the processes, so each holds about 1/N of them and gathers a
block's full weights only while that block runs. Each transformer block is one unit and
the whole model the root one (the token embedding, tied to the output layer, positions
and the final norm live there).

Checkpoints stay ordinary: every rank takes part in gathering the full weights and the
full optimizer state onto rank 0's CPU, which writes the same `model.safetensors` and
`state.pt` a single process writes (the optimizer state keyed by parameter index, as
`torch.optim.Optimizer.state_dict` keys it). So a run trained under FSDP samples, exports
and resumes without FSDP, and the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from musegpt.model.gpt import GPT
from musegpt.train import distributed
from musegpt.train.distributed import DistInfo

OptimizerT = TypeVar("OptimizerT", bound=torch.optim.Optimizer)
FULL_ON_RANK0 = StateDictOptions(full_state_dict=True, cpu_offload=True)


def check_supported(device: torch.device, *, adapter: bool) -> None:
    """Refuse, naming the reason, what FSDP training does not support here. (`compile`
    works with it: measured on CPUs with gloo, the same losses as without.)"""
    if not distributed.launched_by_torchrun():
        raise ValueError(
            "fsdp=true shards the model across several processes: start them with "
            "`torchrun --nproc_per_node=N -m musegpt.train ... fsdp=true` (or procs=N on one "
            "machine's CPUs), or train without fsdp in one process"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"fsdp=true needs CPUs (gloo) or CUDA GPUs (NCCL), not {device.type}")
    if adapter:
        raise ValueError(
            "fsdp=true cannot train adapters (LoRA): only the adapters need gradients and "
            "optimizer state, so fine-tune without fsdp"
        )


def shard_model(model: GPT, dtype: torch.dtype, device: torch.device) -> None:
    """Shard `model` in place over every process: each block a unit, then the root.

    Parameters become `DTensor`s holding this rank's rows; `fully_shard` moves them to the
    mesh's device, so a model built on the CPU never needs to fit one GPU whole. With a
    bfloat16 `dtype`, weights are gathered and used in bfloat16 and gradients reduced in
    float32 (the trainer's autocast still keeps norms and the loss in float32)."""
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    policy = MixedPrecisionPolicy(
        param_dtype=None if dtype == torch.float32 else dtype, reduce_dtype=torch.float32
    )
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's piece of a sharded tensor (the tensor itself when not sharded)."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def all_finite(params: Sequence[torch.Tensor], info: DistInfo) -> bool:
    """Whether every rank's shards are all finite (one answer for every rank)."""
    flags = torch.stack([torch.isfinite(local_part(p)).all() for p in params])
    ok = flags.all().to(torch.float32)
    return bool(distributed.all_reduce_mean(ok, info).item() == 1.0)


def shard_summary(model: nn.Module, info: DistInfo) -> str:
    """One line saying how many parameters each rank holds, e.g. for the log."""
    local = sum(local_part(p).numel() for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    sizes = distributed.gather_objects(local, info)
    return (
        f"fsdp: {info.world_size} processes share {total:,} parameters "
        f"(held per rank: {', '.join(f'{n:,}' for n in sizes)}), with their gradients and "
        "optimizer state"
    )


# ---------------------------------------------------------------------- checkpoints


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The optimizer's parameters' names, in the order its state_dict numbers them."""
    name_of = {id(p): name for name, p in model.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]


def _numbered(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A name-keyed optimizer state dict (torch.distributed.checkpoint's) keyed by index."""
    index = {name: i for i, name in enumerate(names)}
    return {
        "state": {index[name]: value for name, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [index[name] for name in group["params"]]}
            for group in state["param_groups"]
        ],
    }


def _named(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The reverse of `_numbered`."""
    return {
        "state": {names[int(i)]: value for i, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [names[int(i)] for i in group["params"]]}
            for group in state["param_groups"]
        ],
    }


def full_model(model: GPT) -> GPT | None:
    """A plain CPU copy of the sharded `model` on rank 0 (None elsewhere). Every rank must
    call it: the weights are gathered with collectives."""
    weights = get_model_state_dict(model, options=FULL_ON_RANK0)
    if torch.distributed.get_rank() != 0:
        return None
    with torch.device("meta"):
        copy = GPT(model.config)
    copy.load_state_dict(weights, assign=True)
    copy.lm_head.weight = copy.wte.weight  # assign=True replaced the tied tensor
    return copy


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The whole optimizer state, as `optimizer.state_dict()` of an unsharded run would give
    it, on rank 0 (empty elsewhere). Every rank must call it."""
    state = get_optimizer_state_dict(model, optimizer, options=FULL_ON_RANK0)
    if torch.distributed.get_rank() != 0:
        return {}
    return _numbered(state, _param_names(model, optimizer))


def shard_training(
    model: GPT,
    optimizer: torch.optim.Optimizer,
    make_optimizer: Callable[[], OptimizerT],
    dtype: torch.dtype,
    device: torch.device,
) -> OptimizerT:
    """Shard `model` (see `shard_model`) and return a new optimizer over its sharded
    parameters that carries over the state `optimizer` (built on the unsharded model, e.g.
    loaded from a checkpoint) had, each rank keeping its shard of it."""
    names = _param_names(model, optimizer)  # before sharding replaces the parameters
    state = optimizer.state_dict()
    shard_model(model, dtype, device)
    sharded = make_optimizer()
    if state["state"]:
        options = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(model, sharded, _named(state, names), options=options)
    return sharded
