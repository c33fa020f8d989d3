"""What FSDP saves and costs: per-process memory and training speed of the trainer's own
machinery (GPT, `optimizer_for`, `sharding.shard_model`) in one process, under DDP and
under FSDP, on random tokens (docs/scaling.md).

    OMP_NUM_THREADS=1 python benchmarks/fsdp_probe.py --mode single --batch 8
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 benchmarks/fsdp_probe.py --mode ddp
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 benchmarks/fsdp_probe.py --mode fsdp

Each process reports the bytes of weights, gradients and AdamW state it holds after a
step (its shards under FSDP), its peak resident memory, and tokens/s over all processes
(wall and CPU seconds: on a shared machine the CPU time is the steadier figure). The
global batch is `--batch` rows per process times the processes: give one process twice the
rows to compare it with two.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
import torch.distributed as dist
from torch import nn

from musegpt.model.gpt import GPT
from musegpt.train import distributed, sharding
from musegpt.train.config import TrainConfig
from musegpt.train.trainer import optimizer_for


def held_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of this process's weights, gradients and optimizer state (its shards)."""

    def size(t: torch.Tensor) -> int:
        local = sharding.local_part(t)
        return local.numel() * local.element_size()

    params = list(model.parameters())
    moments = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return {
        "weights": sum(size(p) for p in params),
        "gradients": sum(size(p.grad) for p in params if p.grad is not None),
        "optimizer": sum(size(v) for v in moments),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("single", "ddp", "fsdp"), default="fsdp")
    parser.add_argument("--n-layer", type=int, default=6)
    parser.add_argument("--n-embd", type=int, default=384)
    parser.add_argument("--n-head", type=int, default=6)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=4, help="rows per process")
    parser.add_argument("--steps", type=int, default=6, help="timed steps after one warm-up")
    args = parser.parse_args()
    device = torch.device("cpu")
    info = distributed.setup(device)
    if args.mode != "single" and info.world_size < 2:
        parser.error(f"--mode {args.mode} runs under torchrun with 2 or more processes")
    batch = args.batch

    config = TrainConfig(
        n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, block_size=args.block
    )
    torch.manual_seed(0)
    model = GPT(config.gpt_config(args.vocab))
    optimizer = optimizer_for(model, config, device)
    forward: nn.Module = model
    if args.mode == "fsdp":
        optimizer = sharding.shard_training(
            model, optimizer, lambda: optimizer_for(model, config, device), torch.float32, device
        )
    elif args.mode == "ddp":
        forward = nn.parallel.DistributedDataParallel(model)
    generator = torch.Generator().manual_seed(1 + info.rank)

    def step() -> None:
        x = torch.randint(0, args.vocab, (batch, args.block), generator=generator)
        loss = forward(x, x.roll(-1, dims=1)).loss
        loss.backward()
        nn.utils.clip_grad_norm_(list(model.parameters()), 1.0, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # keep gradients allocated: they are counted

    step()
    distributed.barrier(info)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    distributed.barrier(info)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tokens = args.steps * batch * args.block * info.world_size
    report = {
        "mode": args.mode,
        "rank": info.rank,
        "processes": info.world_size,
        "parameters": model.num_parameters(),
        "held_MB": {k: round(v / 2**20, 2) for k, v in held_bytes(model, optimizer).items()},
        "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tokens_per_s_wall": round(tokens / wall, 1),
        "cpu_s_per_step": round(cpu / args.steps, 3),
    }
    for line in distributed.gather_objects(json.dumps(report), info):
        if info.is_main:
            print(line)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
