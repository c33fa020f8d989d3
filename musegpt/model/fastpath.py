"""Leaner calls for the GPT's layers, and a faster matrix-vector product for CPU decoding.

`linear`, `layer_norm` and `dropout` are what `layer(x)` computes, with less Python overhead
for the plain torch modules (any other module, e.g. a LoRA-wrapped layer, or one with hooks,
is simply called). What they change is speed, never results beyond float rounding.

Decoding on a CPU (no autograd, at most `DECODE_ROWS` rows) is bound by how fast the weights
stream from memory, and `F.linear` leaves much of that on the table (measured on a 2-core
AMD EPYC, torch 2.13, MKL; weights streamed from DRAM):

- MKL's matrix-vector product reads an (out, in) weight at 7-9 GB/s but an (in, out) one
  at 15-19 GB/s, so layers with more outputs than inputs (c_attn, c_fc, the LM head)
  multiply by a cached transposed copy;
- a single matrix product uses one core however many torch threads there are, while a
  batched product (`torch.bmm`) runs its batch in parallel: cutting the outputs into one
  block per thread reaches 23-31 GB/s at one row and 11-13 GB/s (up from 5-9) at eight.

The copies are cached on the layer (the layer's size in memory, once) and made again when
the weight is replaced or changed in place, or the thread count changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Inference on a CPU with at most this many rows (batch x new tokens) counts as decoding.
DECODE_ROWS = 16
_CACHE_ATTR = "_musegpt_decode_weight"
# Several rows (a batch) gain from a second block per thread (~3-5% at batch 8).
BLOCKS_PER_THREAD_BATCHED = 2


def _plain(layer: nn.Module, kind: type[nn.Module]) -> bool:
    return type(layer) is kind and not (layer._forward_hooks or layer._forward_pre_hooks)


def _blocks_of_transpose(layer: nn.Linear, weight: torch.Tensor, blocks: int) -> torch.Tensor:
    """(blocks, in, out / blocks), contiguous: W.T cut into column blocks, cached."""
    key = (weight.data_ptr(), weight._version, tuple(weight.shape), blocks)
    cached: tuple[tuple[object, ...], torch.Tensor] | None = layer.__dict__.get(_CACHE_ATTR)
    if cached is None or cached[0] != key:
        n_out, n_in = weight.shape
        copy = weight.detach().view(blocks, n_out // blocks, n_in).transpose(1, 2).contiguous()
        cached = (key, copy)
        layer.__dict__[_CACHE_ATTR] = cached
    return cached[1]


def _decode_linear(
    layer: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor
) -> torch.Tensor | None:
    """`F.linear(x, weight, bias)` for a few rows on a CPU, or None where F.linear is best."""
    n_out, n_in = weight.shape
    rows = x.numel() // n_in
    threads = torch.get_num_threads()
    # The transposed copy's blocks depend on the thread count only, never on the rows, so
    # a varying batch (a server's) never makes the copy again.
    copy_blocks = threads if threads > 1 and n_out % threads == 0 else 1
    if n_out > n_in and (rows == 1 or threads == 1):
        w = _blocks_of_transpose(layer, weight, copy_blocks)
        if copy_blocks == 1:
            flat = x.reshape(rows, n_in)
            y = flat @ w[0] if bias is None else torch.addmm(bias, flat, w[0])
            return y.view(*x.shape[:-1], n_out)
        # (blocks, 1, out / blocks) is already in the order of the outputs
        parts = _bmm(x.reshape(1, 1, n_in).expand(copy_blocks, 1, n_in), w, bias)
        return parts.view(*x.shape[:-1], n_out)
    if threads == 1:
        return None
    # Blocks of the weight itself, each a contiguous (out / blocks, in) matrix.
    blocks = threads * (BLOCKS_PER_THREAD_BATCHED if rows > 1 else 1)
    if n_out % blocks:
        blocks = copy_blocks
    if blocks == 1:
        return None
    w = weight.detach().view(blocks, n_out // blocks, n_in).transpose(1, 2)
    parts = _bmm(x.reshape(1, rows, n_in).expand(blocks, rows, n_in), w, bias)
    return parts.transpose(0, 1).reshape(*x.shape[:-1], n_out)


def _bmm(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ w per block, plus the bias cut into the same blocks."""
    if bias is None:
        return torch.bmm(x, w)
    return torch.baddbmm(bias.view(w.shape[0], 1, w.shape[2]), x, w)


def linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)` for a linear layer (see the module docstring)."""
    if not _plain(layer, nn.Linear):
        out: torch.Tensor = layer(x)
        return out
    params = layer._parameters
    weight, bias = params["weight"], params["bias"]
    assert weight is not None
    if (
        not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == weight.dtype
        and x.numel() <= DECODE_ROWS * weight.shape[1]
    ):
        y = _decode_linear(layer, weight, bias, x)  # type: ignore[arg-type]
        if y is not None:
            return y
    return F.linear(x, weight, bias)


def layer_norm(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)` for a layer norm."""
    if not _plain(layer, nn.LayerNorm):
        out: torch.Tensor = layer(x)
        return out
    params = layer._parameters
    eps: float = layer.eps  # type: ignore[assignment]
    shape: tuple[int, ...] = layer.normalized_shape  # type: ignore[assignment]
    return F.layer_norm(x, shape, params["weight"], params["bias"], eps)


def dropout(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`module(x)` for a dropout module, skipping the call where it can only return x."""
    if module.training and (type(module) is not nn.Dropout or module.p > 0):
        out: torch.Tensor = module(x)
        return out
    return x
