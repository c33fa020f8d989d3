"""Where MuseGPT keeps things on the user's machine (each overridable by an environment
variable, so tests and servers can point elsewhere)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """Downloaded or assembled data: corpora, the default model ($MUSEGPT_CACHE)."""
    return Path(os.environ.get("MUSEGPT_CACHE") or "~/.cache/musegpt").expanduser()


def config_dir() -> Path:
    """User settings such as the model registry ($MUSEGPT_CONFIG)."""
    return Path(os.environ.get("MUSEGPT_CONFIG") or "~/.config/musegpt").expanduser()


@contextmanager
def cache_lock(entry: Path) -> Iterator[None]:
    """Held while one cache `entry` is made: a second process making the same entry (a server
    and a command started together on a fresh machine, or two test workers) waits here, then
    finds it made instead of making it again over the first. Callers check again inside.
    The lock files live in the cache's own `locks/` folder, named by the entry's path, so the
    entry's folder holds only what was made (and a lock file is never deleted while held)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(str(entry.resolve()).encode()).hexdigest()[:16]
    try:
        import fcntl
    except ImportError:  # not POSIX: entries are still written atomically, only maybe twice
        yield
        return
    with open(locks / f"{entry.name}.{key}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
