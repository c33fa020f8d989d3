"""The Python API: `musegpt.load(...)` gives an engine you can generate and stream from.

import musegpt
model = musegpt.load("runs/baby/best")      # a MuseGPT model, a .gguf file, a HF folder,
print(model.generate("ROMEO:", max_new_tokens=100, temperature=0.8, seed=1))
for piece in model.stream("JULIET:", max_new_tokens=100):
    print(piece, end="", flush=True)
"""

from __future__ import annotations

from pathlib import Path

from musegpt.engines.base import Engine
from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.generation.decoder import OverflowPolicy

MuseModel = MuseGPTEngine  # the name this API had before other backends joined


def load(
    model: str | Path | None = None, device: str = "cpu", overflow: OverflowPolicy = "slide"
) -> Engine:
    """An engine for `model`: a registered name (see `musegpt models`), a MuseGPT model file
    or folder, a .gguf file, or a Hugging Face folder; None is the default model."""
    from musegpt.engines.registry import open_engine

    return open_engine(model, device=device, overflow=overflow)
