"""A module compiled with `torch.compile`, that falls back to eager mode if compiling fails.

`torch.compile` compiles lazily, on the first call, and on a CPU inductor needs a working
C++ compiler; a missing compiler, an operation it cannot handle or a bug in it all surface
then as a `TorchDynamoException`. Training should not die of that: the module then runs
eagerly (the same results, just slower) and says why once.

On a CPU, in float32, compiling the baby Shakespeare model's training step makes it
1.02-1.15x faster than eager (fused layer norms, GELU, attention softmax and residual adds;
most with one thread, least with two on a quiet machine: see docs/benchmarks.md), for a
one-off compile of ~10-90 s (less when inductor's on-disk cache already holds the graphs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch._dynamo.exc import TorchDynamoException


class CompiledWithFallback(nn.Module):
    """`module`, compiled on its first call; eager from then on if that fails.

    `on_fallback(reason)` is called once when compiling fails. `compile_seconds` is the
    time the first call took (compiling included), None before it; `compiled` says whether
    calls run the compiled code. The wrapped module's parameters are this module's own, so
    optimisers and DistributedDataParallel can take either."""

    def __init__(self, module: nn.Module, on_fallback: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.module = module
        # Not a registered submodule: the compiled wrapper holds the same parameters again.
        self._compiled_call: Callable[..., Any] | None = torch.compile(module)
        self._on_fallback = on_fallback
        self.compile_seconds: float | None = None

    @property
    def compiled(self) -> bool:
        return self._compiled_call is not None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        call = self._compiled_call
        if call is None:
            return self.module(*args, **kwargs)
        start = time.perf_counter()
        try:
            out = call(*args, **kwargs)
        except TorchDynamoException as error:  # raised while compiling, before running
            self._compiled_call = None
            if self._on_fallback is not None:
                first_line = (str(error).strip().splitlines() or [""])[0]
                self._on_fallback(f"{type(error).__name__}: {first_line[:300]}")
            out = self.module(*args, **kwargs)
        if self.compile_seconds is None:
            self.compile_seconds = time.perf_counter() - start
        return out
