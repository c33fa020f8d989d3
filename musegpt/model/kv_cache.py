"""Key/value cache for incremental decoding.

Preallocated per layer, so appending a token is a copy, not a concatenation, and rolling
back (for backtracking decoders) is just lowering `length`. The memory is not cleared: only
the first `length` positions are ever read, and zeroing a whole cache up front (126 MB for
16 rows of a 10M model) cost a server more than the forward pass that fills it.
"""

from __future__ import annotations

import torch


def uninitialized(
    shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str
) -> torch.Tensor:
    """Fresh cache memory, not cleared (tests fill it with NaN to prove it is never read)."""
    return torch.empty(shape, dtype=dtype, device=device)


class KVCache:
    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        max_length: int,
        head_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (batch_size, n_head, max_length, head_size)
        self.keys = [uninitialized(shape, dtype, device) for _ in range(n_layer)]
        self.values = [uninitialized(shape, dtype, device) for _ in range(n_layer)]
        self.max_length = max_length
        self.length = 0  # tokens cached so far, the same for every layer

    def append(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values for `layer`; return all keys/values so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"KV cache holds {self.max_length} tokens; {end} were asked for")
        keys, values = self.keys[layer], self.values[layer]
        keys.narrow(2, start, end - start).copy_(k)
        values.narrow(2, start, end - start).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)

    def advance(self, n: int) -> None:
        """Called once per forward pass, after every layer has appended its n tokens."""
        self.length += n

    def truncate(self, length: int) -> None:
        """Forget everything after the first `length` tokens."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} tokens to {length}")
        self.length = length

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the batch rows in `rows` (e.g. to drop finished sequences)."""
        self.keys = [self._rows_of(k, rows) for k in self.keys]
        self.values = [self._rows_of(v, rows) for v in self.values]

    def _rows_of(self, store: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The given rows of one layer's store, copying only the positions in use."""
        kept = uninitialized((len(rows), *store.shape[1:]), store.dtype, store.device)
        kept.narrow(2, 0, self.length).copy_(store.narrow(2, 0, self.length)[rows])
        return kept
