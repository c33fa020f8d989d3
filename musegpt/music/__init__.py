"""Music: ABC tunes written by a GPT, kept valid by constrained decoding, played and engraved.

`musegpt.music.compose(request, bars=16, seed=..., engine=None) -> Tune` is the Python entry
point (see docs/music.md). It is imported lazily: the corpus code in this package is used by
`musegpt prepare`, which should not pay for importing torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Tune", "compose"]


def __getattr__(name: str) -> Any:
    if name == "compose":
        from musegpt.music.compose import compose

        return compose
    if name == "Tune":
        from musegpt.music.tune import Tune

        return Tune
    raise AttributeError(f"module 'musegpt.music' has no attribute {name!r}")
