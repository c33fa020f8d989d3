"""The compiled training step (`compile: true`): same losses and gradients as eager mode, and
a clean fallback to eager mode when compiling fails."""

from __future__ import annotations

import copy

import pytest
import torch
import torch._inductor.config as inductor_config

from musegpt.model.compiled import CompiledWithFallback
from musegpt.model.config import GPTConfig
from musegpt.model.gpt import GPT

TINY = GPTConfig(vocab_size=17, block_size=16, n_layer=1, n_head=2, n_embd=16, bias=False)
# Another shape, so that nothing compiled for TINY in this process can be reused for it.
OTHER = GPTConfig(vocab_size=19, block_size=8, n_layer=1, n_head=2, n_embd=24, bias=False)


def _loss_and_grads(model: torch.nn.Module, config: GPTConfig) -> tuple[float, list[torch.Tensor]]:
    """One training step's loss and gradients (the gradients are then cleared)."""
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, config.vocab_size, (3, config.block_size + 1), generator=generator)
    loss = model(tokens[:, :-1], tokens[:, 1:]).loss
    loss.backward()
    params = list(model.parameters())
    grads = [p.grad.clone() for p in params if p.grad is not None]
    assert len(grads) == len(params)
    for p in params:
        p.grad = None
    return loss.item(), grads


def test_compiled_step_matches_eager_step() -> None:
    torch.manual_seed(0)
    eager = GPT(TINY).train()
    twin = copy.deepcopy(eager)
    compiled = CompiledWithFallback(twin)
    eager_loss, eager_grads = _loss_and_grads(eager, TINY)
    compiled_loss, compiled_grads = _loss_and_grads(compiled, TINY)
    assert compiled.compiled, "inductor should compile the model on this machine"
    assert compiled.compile_seconds is not None
    assert compiled_loss == pytest.approx(eager_loss, abs=1e-5)
    for e, c in zip(eager_grads, compiled_grads, strict=True):
        torch.testing.assert_close(c, e, atol=1e-5, rtol=1e-4)


def test_failed_compile_falls_back_to_eager() -> None:
    torch.manual_seed(0)
    eager = GPT(OTHER).train()
    twin = copy.deepcopy(eager)
    reasons: list[str] = []
    wrapped = CompiledWithFallback(twin, on_fallback=reasons.append)
    # A C++ compiler that does not exist, and no cached build to skip compiling with.
    with inductor_config.patch({"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False}):
        loss, grads = _loss_and_grads(wrapped, OTHER)
    assert not wrapped.compiled
    assert len(reasons) == 1 and "Error" in reasons[0]
    eager_loss, eager_grads = _loss_and_grads(eager, OTHER)
    assert loss == eager_loss
    for e, c in zip(eager_grads, grads, strict=True):
        torch.testing.assert_close(c, e, atol=0, rtol=0)
    # and it stays eager, without trying again
    again, _ = _loss_and_grads(wrapped, OTHER)
    assert again == eager_loss and len(reasons) == 1
