"""MuseGPT: an open studio for making art with GPT models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from musegpt.api import MuseModel

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def load(path: Any, device: Any = "cpu", overflow: Any = "slide") -> MuseModel:
    """Load a MuseGPT model; see `musegpt.api.load` (imported lazily: torch is heavy)."""
    from musegpt.api import load as _load

    return _load(path, device=device, overflow=overflow)
