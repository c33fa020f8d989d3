"""The one way outside programs run: a fresh directory, a time limit, a size limit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from musegpt.external import ToolError, ToolLimits, run_tool

QUICK = ToolLimits(timeout_s=60.0, max_output_bytes=1_000_000)


def _script(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "tool.py"
    script.write_text(body)
    return [sys.executable, str(script)]


def test_a_hanging_tool_is_killed_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    command = _script(
        tmp_path,
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n",
    )
    with (
        pytest.raises(ToolError, match=r"took longer than 0.5 s and was stopped"),
        run_tool(command, ToolLimits(timeout_s=0.5, max_output_bytes=1000)),
    ):
        pass
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(pid, 0)


def test_a_tool_writing_too_much_is_stopped(tmp_path: Path) -> None:
    command = _script(tmp_path, "open('big', 'wb').write(b'x' * 10_000_000)\n")
    with (
        pytest.raises(ToolError, match="wrote more than 100000 bytes"),
        run_tool(command, ToolLimits(timeout_s=60.0, max_output_bytes=100_000)),
    ):
        pass


def test_a_tool_runs_in_a_fresh_directory_with_its_inputs(tmp_path: Path) -> None:
    command = _script(
        tmp_path,
        "import os\nopen('out.txt', 'w').write(os.getcwd() + '|' + open('in.txt').read())\n",
    )
    with run_tool(command, QUICK, {"in.txt": b"hello"}) as out:
        where, text = (out / "out.txt").read_text().split("|")
        assert Path(where) == out and text == "hello" and out != Path.cwd()
    assert not out.exists()  # removed afterwards


def test_a_failing_tool_reports_its_last_line(tmp_path: Path) -> None:
    command = _script(tmp_path, "import sys\nprint('working')\nsys.exit('broken input')\n")
    with pytest.raises(ToolError, match="failed: broken input"), run_tool(command, QUICK):
        pass
