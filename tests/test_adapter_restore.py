"""A personal adapter outlives the server that trained it: a fresh server on the same data
folder (and a fresh adapter registry) serves every finished run again, the latest of each
model, and skips a broken run with a warning instead of failing to start.

The runs are a finished job's files (job.json, report.json, adapter.gguf: the shipped
`stage` adapter standing in for a trained one); the job itself is tested in
test_personalise.py."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from musegpt.adapters.registry import shipped_adapter
from musegpt.engines.base import Engine
from musegpt.server import ServerSettings, create_app

LOAD_DEADLINE_S = 120


def finished_run(runs: Path, folder: str, adapter: bytes | None, job: str | None) -> Path:
    """The files a finished adapter job leaves in its run folder."""
    run = runs / folder
    run.mkdir(parents=True)
    stage = shipped_adapter("stage")
    assert stage is not None
    (run / "adapter.gguf").write_bytes(stage.read_bytes() if adapter is None else adapter)
    (run / "report.json").write_text(json.dumps({"adapter": str(run / "adapter.gguf")}))
    if job is not None:
        (run / "job.json").write_text(job)
    return run


def test_a_restarted_server_serves_the_finished_adapters_again(
    gemma: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MUSEGPT_CONFIG", str(tmp_path / "config"))  # nothing registered
    runs = tmp_path / "adapters"
    letters = json.dumps({"model": "works-Sea-letters", "project": "Sea letters"})
    older = finished_run(runs, "works-Sea-letters-20261101-090000-1", b"not gguf", letters)
    os.utime(older / "report.json", (time.time() - 3600,) * 2)  # replaced by the later run
    finished_run(runs, "works-Sea-letters-20261130-120000-3", None, letters)
    finished_run(runs, "works-Diary-20261120-080000-2", None, None)  # before job.json
    finished_run(runs, "works-Broken-20261129-080000-4", b"GGUF but not really", None)
    finished_run(runs, "stray-folder", None, None)
    unfinished = runs / "works-Halfway-20261130-130000-5"
    unfinished.mkdir()  # a job stopped before its report: not served
    shutil.copy(runs / "stray-folder" / "adapter.gguf", unfinished / "adapter.gguf")

    settings = ServerSettings(data_dir=tmp_path, max_tokens=16)
    with (
        caplog.at_level(logging.WARNING),
        TestClient(create_app({"gemma3-270m": gemma}, settings)) as client,
    ):
        end = time.monotonic() + LOAD_DEADLINE_S
        while time.monotonic() < end:
            states = client.get("/health").json()["models"]
            if all(s != "loading" for s in states.values()):
                break
            time.sleep(0.2)
        assert states == {
            "gemma3-270m": "ready",
            "works-Sea-letters": "ready",
            "works-Diary": "ready",
        }
        listed = {m["id"]: m["kind"] for m in client.get("/v1/models").json()["data"]}
        assert listed["works-Sea-letters"] == "text" and "works-Broken" not in listed
        answer = client.post(
            "/v1/completions",
            json={
                "model": "works-Sea-letters",
                "prompt": "My dear sister,",
                "max_tokens": 8,
                "seed": 1,  # unseeded, one run in many drew only line breaks (text "")
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["text"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "works-Broken-20261129-080000-4 is not served" in warned
    assert "stray-folder is not served" in warned and "names no works-PROJECT model" in warned
    # Registered again, so the command line writes with it too.
    registry = json.loads((tmp_path / "config" / "adapters.json").read_text())["adapters"]
    assert registry["works-Sea-letters"]["adapter"].endswith("120000-3/adapter.gguf")
