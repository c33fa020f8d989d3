"""Running outside programs (abcm2ps, fluidsynth, npm): the one way MuseGPT does it.

Every run gets a fresh temporary directory as its working directory (inputs are written
there, outputs read from there, and it is removed afterwards), no standard input, a time
limit after which the whole process group is killed, and a limit on the size of every file it
writes (its captured output included), enforced by the kernel (RLIMIT_FSIZE), so a tool fed
hostile input can neither hang a worker nor fill the disk.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

OUTPUT_LOG = ".tool-output"  # the tool's stdout and stderr, inside its directory
DETAIL_BYTES = 2000  # of that output, how much is read back for an error message


@dataclass(frozen=True)
class ToolLimits:
    timeout_s: float  # wall-clock seconds before the tool is killed
    max_output_bytes: int  # the largest file it may write


class ToolError(OSError):
    """A tool failed, ran too long or wrote too much; the message says which and what."""


@contextmanager
def run_tool(
    command: Sequence[str], limits: ToolLimits, inputs: Mapping[str, bytes] | None = None
) -> Iterator[Path]:
    """Run `command` in a fresh temporary directory holding `inputs` (name -> bytes; refer
    to them by name in `command`) and yield that directory with what the tool wrote; the
    directory is removed when the block ends. Raises `ToolError` when the tool exits
    non-zero, runs past `limits.timeout_s` (it is killed) or writes a file over
    `limits.max_output_bytes`."""
    name = Path(command[0]).name
    with tempfile.TemporaryDirectory(prefix=f"musegpt-{name}-") as tmp:
        workdir = Path(tmp)
        for filename, data in (inputs or {}).items():
            (workdir / filename).write_bytes(data)
        log = workdir / OUTPUT_LOG
        with log.open("wb") as output:
            process = subprocess.Popen(
                _with_file_size_limit(command, limits.max_output_bytes),
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
            )
            try:
                code = process.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                raise ToolError(
                    f"{name} took longer than {limits.timeout_s:g} s and was stopped"
                ) from None
            except BaseException:
                _kill_group(process)
                raise
        if code == -signal.SIGXFSZ or (
            code != 0 and _largest_file(workdir) >= limits.max_output_bytes
        ):
            raise ToolError(
                f"{name} wrote more than {limits.max_output_bytes} bytes and was stopped"
            )
        if code != 0:
            raise ToolError(f"{name} failed: {_last_line(log)}")
        yield workdir


def _with_file_size_limit(command: Sequence[str], limit: int) -> list[str]:
    """`command` started by a shell that first sets RLIMIT_FSIZE (`ulimit -f`, in 512-byte
    blocks) and then execs it. Not `preexec_fn`: Python code between fork and exec can crash
    the child of a threaded process (seen: a segfault when the server's adapter job ran
    llama.cpp's converter)."""
    blocks = max(-(-limit // 512), 1)
    return ["/bin/sh", "-c", f'ulimit -f {blocks} && exec "$@"', "sh", *command]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _largest_file(folder: Path) -> int:
    """A tool that ignores SIGXFSZ fails its write instead; its file is then at the limit."""
    return max((f.stat().st_size for f in folder.rglob("*") if f.is_file()), default=0)


def _last_line(log: Path) -> str:
    with log.open("rb") as f:
        f.seek(max(log.stat().st_size - DETAIL_BYTES, 0))
        tail = f.read().decode("utf-8", "replace").strip().splitlines()
    return tail[-1] if tail else "no output"
