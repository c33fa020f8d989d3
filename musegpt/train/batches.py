"""Training batches: random windows of the memory-mapped token array (as nanoGPT does).

Window starts come from a `torch.Generator` seeded by the config seed; its state is the
run's "data position", saved in checkpoints so a resumed run sees the very same batches.
Under DDP every process draws the *global* batch from an identically seeded generator and
keeps its own slice: the ranks train on different windows, yet one generator state (rank
0's) describes the data position of the whole run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class BatchSampler:
    def __init__(
        self,
        tokens: np.ndarray[Any, np.dtype[Any]],
        block_size: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | None = None,
        split: str = "train",
        stride: int = 0,
    ) -> None:
        if len(tokens) <= block_size:
            # A validation split can also be made larger when the corpus is prepared.
            more = " or a larger --val-fraction in `musegpt prepare`" if split == "val" else ""
            raise ValueError(
                f"the {split} split has {len(tokens):,} tokens, too few for block_size "
                f"{block_size} (needs more than {block_size}); use a smaller block_size, "
                f"more text{more}"
            )
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.device = device or torch.device("cpu")
        self.pin = self.device.type == "cuda"
        self.stride = stride  # windows start at multiples of this (0: anywhere)
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        # Offsets 0..T of one window: x is window[:-1], y is window[1:].
        self._offsets = np.arange(block_size + 1, dtype=np.int64)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets, each (batch_size, block_size) int64."""
        n_starts = len(self.tokens) - self.block_size
        starts = torch.randint(
            n_starts, (self.world_size * self.batch_size,), generator=self.generator
        )
        mine = starts[self.rank * self.batch_size : (self.rank + 1) * self.batch_size].numpy()
        if self.stride:
            mine = mine - mine % self.stride
        # One fancy-index gather reads just the needed pages of the memmap.
        window = torch.from_numpy(self.tokens[mine[:, None] + self._offsets].astype(np.int64))
        if self.device.type != "cpu":
            if self.pin:
                window = window.pin_memory()
            window = window.to(self.device, non_blocking=True)
        return window[:, :-1], window[:, 1:]

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
