"""Does PyTorch's FSDP2 (`fully_shard`) work here, on CPU with gloo? Two processes shard a
small MLP, train a few AdamW steps with gradient clipping, and gather the full state dict
on rank 0: what an `--fsdp` option in the trainer would rest on (docs/scaling.md).

    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node=2 \
        benchmarks/fsdp_probe.py
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor


def main() -> None:
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randn(8, 16)
    losses = []
    for _ in range(5):
        loss = (model(x) - x).pow(2).mean()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(round(loss.item(), 4))
    full = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    weight = model[0].weight
    assert isinstance(weight, DTensor)
    if dist.get_rank() == 0:
        print(f"losses {losses}")
        print(f"rank 0 holds {tuple(weight.to_local().shape)} of {tuple(weight.shape)}")
        print("gathered:", {k: tuple(v.shape) for k, v in full.items()})
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
