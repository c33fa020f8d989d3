"""MuseGPT: an open studio for making art with GPT models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from musegpt.engines.base import Engine

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def load(model: Any = None, device: Any = "cpu", overflow: Any = "slide") -> Engine:
    """An engine for a model name or path: `musegpt.api.load`, imported late (torch is heavy)."""
    from musegpt.api import load as _load

    return _load(model, device=device, overflow=overflow)
