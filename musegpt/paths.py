"""Where MuseGPT keeps things on the user's machine (each overridable by an environment
variable, so tests and servers can point elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Downloaded or assembled data: corpora, the default model ($MUSEGPT_CACHE)."""
    return Path(os.environ.get("MUSEGPT_CACHE") or "~/.cache/musegpt").expanduser()


def config_dir() -> Path:
    """User settings such as the model registry ($MUSEGPT_CONFIG)."""
    return Path(os.environ.get("MUSEGPT_CONFIG") or "~/.config/musegpt").expanduser()
