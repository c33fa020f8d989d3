"""Leaner calls for the GPT's layers, and faster linear layers for CPU inference.

`linear`, `layer_norm` and `dropout` are what `layer(x)` computes, with less Python overhead
for the plain torch modules (any other module, e.g. a LoRA-wrapped layer, or one with hooks,
is simply called). What they change is speed, never results beyond float rounding.

Outside autograd on a CPU, in float32, a linear layer multiplies by a copy of its weight
laid out for the job; `F.linear` lays the weight out again on every call, which is most of
the work when every weight is read once per generated token (measured on a 2-core AMD EPYC,
torch 2.13, MKL and oneDNN, over the 33 linear layers of a 30M-parameter GPT streamed from
DRAM):

- **Several rows** (a batch, a prompt) use a copy that oneDNN has reordered once into the
  blocked layout its kernels read ("prepacked", as torch's own inference compiler does):
  eight rows take ~8 ms instead of 15-19 ms, a 64-token prompt 23 ms instead of 38.
- **One row** (batch-1 decoding) is bound by how fast the weights stream from memory, and
  a oneDNN call costs ~14 us more than a plain matrix product, which a 10M model's small
  layers feel. Here the outputs are cut into one block per thread and multiplied with
  `torch.bmm`, which runs its blocks in parallel (one matrix product uses one core whatever
  the thread count), by a transposed copy for layers with more outputs than inputs (MKL
  reads an (in, out) weight at 15-19 GB/s, an (out, in) one at 7-9): 7 ms instead of 12.
  Weights of 2 MB or more are copied onto huge pages for this (see `_on_huge_pages`), so
  a large model keeps a second copy of its linear weights for one-row decoding and, once
  it has decoded batches, a third, oneDNN's.

The copies are cached per layer in a weak map, so copies of the model never carry them,
and made again when the weight is replaced or changed in place, or the thread count
changes. A change in place is seen by the weight's version counter, except that fused
optimizers (CPU and CUDA fused AdamW, torch 2.13) update weights without bumping it: so a
weight that requires grad also keys its copies on a count of optimizer steps, bumped by a
hook every `torch.optim` optimizer runs after each step. Where oneDNN cannot pack (a torch
built without it), several rows use `F.linear`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import Optimizer, register_optimizer_step_post_hook

# The row count oneDNN lays the packed weights out for: decoding's batches are 1-16 rows,
# and the layout chosen for 8 is as fast as the best one measured at 8, 16 and 64 rows and
# within 5% at 512-2048.
PACKED_FOR_ROWS = 8

# Transparent huge pages: Linux backs a region with 2 MB pages when asked (madvise), so a
# matrix-vector product walks its weights with one TLB entry per 2 MB instead of 512.
_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14
_libc = (
    ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None
)

_Copies = dict[str, tuple[tuple[object, ...], torch.Tensor]]
_copies: weakref.WeakKeyDictionary[nn.Module, _Copies] = weakref.WeakKeyDictionary()
_can_pack: bool = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
_optimizer_steps = 0  # steps taken by any torch optimizer in this process


def _count_optimizer_step(
    optimizer: Optimizer, args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_optimizer_step)


def _plain(layer: nn.Module, kind: type[nn.Module]) -> bool:
    return type(layer) is kind and not (layer._forward_hooks or layer._forward_pre_hooks)


def _cached_copy(
    layer: nn.Module,
    weight: torch.Tensor,
    kind: str,
    make: Callable[[torch.Tensor], torch.Tensor],
    *extra: object,
) -> torch.Tensor:
    """`make(weight)`, cached on `layer` until the weight (or `extra`) changes."""
    # A trainable weight may have been changed by a fused optimizer step that left its
    # version alone (see the module docstring).
    steps = _optimizer_steps if weight.requires_grad else None
    key = (weight.data_ptr(), weight._version, steps, tuple(weight.shape), *extra)
    copies = _copies.setdefault(layer, {})
    cached = copies.get(kind)
    if cached is None or cached[0] != key:
        cached = (key, make(weight.detach()))
        copies[kind] = cached
    return cached[1]


def _pack(weight: torch.Tensor) -> torch.Tensor:
    packed: torch.Tensor = torch.ops.mkldnn._reorder_linear_weight(weight, PACKED_FOR_ROWS)
    return packed


def _packed_linear(
    layer: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor
) -> torch.Tensor | None:
    """`F.linear(x, weight, bias)` by oneDNN's prepacked copy; None where it cannot pack."""
    global _can_pack
    try:
        packed = _cached_copy(layer, weight, "packed", _pack)
    except (AttributeError, NotImplementedError, RuntimeError):
        _can_pack = False  # this torch has no oneDNN linear: F.linear from now on
        return None
    y: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    return y


def _on_huge_pages(weights: torch.Tensor) -> torch.Tensor:
    """A copy of `weights` in memory that Linux backs with 2 MB pages (THP in "madvise" or
    "always" mode), for weights of 2 MB or more; `weights` itself elsewhere. Streaming a
    30M model's weights for one row is ~10% faster so (measured: a 6.4 ms step instead of
    7.0; no gain for a 10M model, whose layers are under 2 MB)."""
    nbytes = weights.numel() * weights.element_size()
    if _libc is None or nbytes < _HUGE_PAGE:
        return weights
    # Fresh, untouched memory (a large allocation is its own mapping), aligned to 2 MB by
    # hand: the kernel must hear the advice before the first write.
    raw = torch.empty(nbytes + _HUGE_PAGE, dtype=torch.uint8)
    offset = -raw.data_ptr() % _HUGE_PAGE
    start = raw.data_ptr() + offset
    length = min(-(-nbytes // _HUGE_PAGE) * _HUGE_PAGE, raw.numel() - offset)
    if _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), _MADV_HUGEPAGE) != 0:
        return weights
    moved = raw[offset : offset + nbytes].view(weights.dtype).view(weights.shape)
    return moved.copy_(weights)


def _one_row_linear(
    layer: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor
) -> torch.Tensor:
    """`F.linear(x, weight, bias)` for one row, as per-thread blocks of the outputs."""
    n_out, n_in = weight.shape
    threads = torch.get_num_threads()
    blocks = threads if threads > 1 and n_out % threads == 0 else 1

    def blocks_of(w: torch.Tensor) -> torch.Tensor:
        """(blocks, in, out / blocks): W.T cut into column blocks, contiguous where the
        layer has more outputs than inputs (see the module docstring)."""
        cut = w.view(blocks, n_out // blocks, n_in)
        if n_out > n_in:
            return _on_huge_pages(cut.transpose(1, 2).contiguous())
        return _on_huge_pages(cut).transpose(1, 2)

    w = _cached_copy(layer, weight, "one row", blocks_of, blocks)
    flat = x.reshape(1, n_in)
    if blocks == 1:
        y = flat @ w[0] if bias is None else torch.addmm(bias, flat, w[0])
    else:
        # (blocks, 1, out / blocks) is already in the order of the outputs
        rows = flat.expand(blocks, 1, n_in)
        if bias is None:
            y = torch.bmm(rows, w)
        else:
            y = torch.baddbmm(bias.view(blocks, 1, n_out // blocks), rows, w)
    return y.view(*x.shape[:-1], n_out)


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
        and x.dtype == weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    ):
        if x.numel() == weight.shape[1]:
            return _one_row_linear(layer, weight, bias, x)  # type: ignore[arg-type]
        if _can_pack:
            y = _packed_linear(layer, weight, bias, x)  # type: ignore[arg-type]
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
