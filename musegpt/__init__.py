"""MuseGPT: an open studio for making art with GPT models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from musegpt.engines.base import Engine
    from musegpt.images.model import ImageModel

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


@overload
def load(model: Literal["icons"], device: Any = ..., overflow: Any = ...) -> ImageModel: ...
@overload
def load(model: Any = None, device: Any = "cpu", overflow: Any = "slide") -> Engine: ...
def load(model: Any = None, device: Any = "cpu", overflow: Any = "slide") -> Engine | ImageModel:
    """An engine for a model name or path: `musegpt.api.load`, imported late (torch is heavy).
    An image model ("icons", or a model file from `musegpt train-images`) is an `ImageModel`
    instead: `musegpt.load("icons").draw("a red apple", n=4)` returns PIL images."""
    from musegpt.images.model import is_image_model, load_image_model

    if model is not None and is_image_model(model):
        return load_image_model(model)
    from musegpt.api import load as _load

    return _load(model, device=device, overflow=overflow)
