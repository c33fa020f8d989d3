"""Writing files so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import glob
import os
import secrets
from collections.abc import Callable
from pathlib import Path

_TMP = ".tmp"


def remove_stale_temporaries(path: str | Path) -> None:
    """Delete the temporary files that `atomic_write(path, ...)` calls killed mid-write
    (SIGKILL, power loss) left beside `path`. Only for a path that nothing is writing now."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*{_TMP}"):
        stale.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` to fill a temporary file beside `path`, fsync it, then rename it
    over `path`. Readers see the old file or the new one, never a torn one."""
    commit_temporary(write_temporary(path, write), path)


def write_temporary(path: str | Path, write: Callable[[Path], object]) -> Path:
    """The first half of `atomic_write`: `write(tmp)` fills a new temporary file beside
    `path` (one `remove_stale_temporaries(path)` finds), which is returned, not yet durable
    nor in place; `commit_temporary(tmp, path)` is the second half, e.g. on another thread."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}{_TMP}"
    # Created as any new file is (0666 less the umask), unlike mkstemp's 0600; reading the
    # mode back gives the umask without changing it (os.umask is process-wide, not thread-safe).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    mode = os.fstat(fd).st_mode & 0o777
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # a writer may have made its own file (safetensors makes 0600)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def commit_temporary(tmp: Path, path: str | Path) -> None:
    """fsync the temporary file `tmp`, rename it over `path` and make the rename durable."""
    path = Path(path)
    try:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
