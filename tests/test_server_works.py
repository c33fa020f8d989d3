"""The works library over HTTP, and no acknowledged save lost when the server is killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from test_server_helpers import tiny_engine

from musegpt.model import save_model
from musegpt.server import ServerSettings, create_app
from musegpt.store import WorksStore


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    store = WorksStore(tmp_path / "works.db")
    settings = ServerSettings(data_dir=tmp_path, max_tokens=64)
    with TestClient(create_app({"tiny": tiny_engine()}, settings, store)) as c:
        yield c


def test_projects_documents_versions_bible_lore_export(client: TestClient) -> None:
    project = client.post("/v1/projects", json={"name": "Sea"}).json()
    pid = project["id"]
    doc = client.post(f"/v1/projects/{pid}/documents", json={"title": "One", "text": "a"}).json()
    saved = client.put(f"/v1/documents/{doc['id']}", json={"text": "ab", "note": "more"}).json()
    assert saved["version"] == 2
    versions = client.get(f"/v1/documents/{doc['id']}/versions").json()["data"]
    assert [v["number"] for v in versions] == [1, 2]
    assert client.get(f"/v1/documents/{doc['id']}/versions/1").json()["text"] == "a"
    bible = client.put(f"/v1/projects/{pid}/bible", json={"premise": "gulls"}).json()
    assert bible["premise"] == "gulls"
    lore = client.post(f"/v1/projects/{pid}/lore", json={"name": "Ada", "text": "keeper"}).json()
    assert client.put(f"/v1/lore/{lore['id']}", json={"text": "old keeper"}).json()["text"] == (
        "old keeper"
    )
    full = client.get(f"/v1/projects/{pid}").json()
    assert full["documents"][0]["version"] == 2 and full["lore"][0]["name"] == "Ada"
    exported = client.get(f"/v1/projects/{pid}/export").json()
    copy = client.post("/v1/projects/import", json=exported).json()
    assert client.get(f"/v1/projects/{copy['id']}/export?format=markdown").text.startswith("# Sea")
    assert "Title: Sea" in client.get(f"/v1/projects/{pid}/export?format=fountain").text


def _export_with_a_generation(client: TestClient) -> dict[str, Any]:
    pid = client.post("/v1/projects", json={"name": "Sea"}).json()["id"]
    doc = client.post(f"/v1/projects/{pid}/documents", json={"title": "One", "text": "a"}).json()
    client.put(f"/v1/documents/{doc['id']}", json={"text": "ab"})
    store: WorksStore = client.app.state.musegpt.store  # type: ignore[attr-defined]
    generation = store.record_generation("story", "tiny", {"seed": 1}, "p", "abc", pid)
    client.put(f"/v1/documents/{doc['id']}", json={"text": "abc", "generation_id": generation})
    exported: dict[str, Any] = client.get(f"/v1/projects/{pid}/export").json()
    return exported


def _broken(exported: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `exported` with the field at `path` (dotted) set to `value`."""
    copy: dict[str, Any] = json.loads(json.dumps(exported))
    *parents, last = path.split(".")
    target: Any = copy
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[int(last) if isinstance(target, list) else last] = value
    return copy


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("version", "one", "version"),
        ("version", 99, "version"),
        ("documents.0.versions.1.number", "two", "documents.0.versions.1.number"),
        ("documents.0.versions.1.number", 1, "documents.0.versions.1.number"),
        ("documents.0.title", None, "documents.0.title"),
        ("documents.0.versions.0.text", ["a", "b"], "documents.0.versions.0.text"),
        ("documents.0.versions.2.generation_id", 999, "documents.0.versions.2.generation_id"),
        ("project.name", None, "project.name"),
        ("lore", "not a list", "lore"),
    ],
)
def test_a_bad_import_is_400_naming_the_field(
    client: TestClient, path: str, value: Any, field: str
) -> None:
    exported = _export_with_a_generation(client)
    assert client.post("/v1/projects/import", json=exported).status_code == 200  # as exported
    projects = len(client.get("/v1/projects").json()["data"])
    response = client.post("/v1/projects/import", json=_broken(exported, path, value))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field and field in error["message"]
    assert len(client.get("/v1/projects").json()["data"]) == projects  # nothing half-written


def test_saving_with_an_unknown_generation_is_400_naming_it(client: TestClient) -> None:
    pid = client.post("/v1/projects", json={"name": "Sea"}).json()["id"]
    doc = client.post(f"/v1/projects/{pid}/documents", json={"title": "One"}).json()
    response = client.put(f"/v1/documents/{doc['id']}", json={"text": "b", "generation_id": 77})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "generation_id" and "77" in error["message"]
    assert client.get(f"/v1/documents/{doc['id']}").json()["version"] == 1


def test_missing_and_bad_things_are_clear_4xx(client: TestClient) -> None:
    assert client.get("/v1/projects/999").status_code == 404
    assert client.get("/v1/documents/0").json()["error"]["param"] == "document_id"
    assert client.get("/v1/documents/abc").status_code == 400
    assert client.post("/v1/projects", json={"name": ""}).json()["error"]["param"] == "name"
    assert client.post("/v1/projects/import", json={"format": "x"}).status_code == 400
    assert client.get("/v1/projects/1/export?format=pdf").status_code == 400


def test_studio_task_records_provenance(client: TestClient) -> None:
    pid = client.post("/v1/projects", json={"name": "Ideas"}).json()["id"]
    body = {
        "text": "a city under the sea",
        "count": 2,
        "project_id": pid,
        "params": {"max_new_tokens": 20, "seed": 1},
    }
    work = client.post("/v1/studio/describe", json=body)
    assert work.status_code == 200, work.text
    result = work.json()
    assert result["task"] == "describe" and result["meta"]["model"] == "tiny"
    generations = client.get(f"/v1/projects/{pid}/generations").json()["data"]
    assert generations[0]["id"] == result["generation_id"]
    assert generations[0]["params"]["seed"] == 1 and generations[0]["prompt"] == body["text"]
    bad = client.post("/v1/studio/describe", json={"text": "x", "params": {"top_p": 5}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "top_p"
    assert client.post("/v1/studio/dance", json={"text": "x"}).status_code == 400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(model: Path, db: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "musegpt.cli.app",
        "serve",
        "--model",
        str(model),
        "--works",
        str(db),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start")


def test_sigkill_during_saves_loses_no_acknowledged_save(tmp_path: Path) -> None:
    engine = tiny_engine()
    model = save_model(tmp_path / "tiny", engine.model, engine.tokenizer)
    db, port = tmp_path / "works.db", _free_port()
    server = _start(model, db, port)
    base = f"http://127.0.0.1:{port}/v1"
    acknowledged: list[tuple[int, int, str]] = []
    try:
        pid = httpx.post(f"{base}/projects", json={"name": "Crash"}).json()["id"]
        docs = [
            httpx.post(f"{base}/projects/{pid}/documents", json={"title": f"D{i}"}).json()["id"]
            for i in range(4)
        ]
        stop = threading.Event()

        def writer(doc: int) -> None:
            with httpx.Client(timeout=5) as http:
                for n in range(10_000):
                    if stop.is_set():
                        return
                    text = f"draft {n} of {doc} " + "word " * 50
                    try:
                        reply = http.put(f"{base}/documents/{doc}", json={"text": text})
                    except httpx.HTTPError:
                        return  # the server died mid-request: not acknowledged
                    if reply.status_code == 200:
                        acknowledged.append((doc, reply.json()["version"], text))

        threads = [threading.Thread(target=writer, args=(d,)) for d in docs]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60  # fail, not hang, if saves stop being acknowledged
        while len(acknowledged) < 40:
            writing = any(t.is_alive() for t in threads)
            assert writing and time.monotonic() < deadline, (
                f"only {len(acknowledged)} saves acknowledged (writers alive: {writing})"
            )
            time.sleep(0.02)
        os.kill(server.pid, signal.SIGKILL)  # while saves are in flight
        server.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    server = _start(model, db, port)
    try:
        for doc, version, text in list(acknowledged):
            got = httpx.get(f"{base}/documents/{doc}/versions/{version}").json()
            assert got["text"] == text
    finally:
        server.kill()
        server.wait()


def test_form_checker_endpoint(client: TestClient) -> None:
    # The poem endpoint itself: tests/test_studio_registry.py.
    check = client.post(
        "/v1/forms/check",
        json={
            "text": "An old silent pond\nA frog jumps into the pond\nSplash! Silence again",
            "form": "haiku",
        },
    ).json()
    assert [line["number"] for line in check["lines"]] == [1, 2, 3]
    bad = client.post("/v1/forms/check", json={"text": "x", "form": "../../etc/passwd.yaml"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "form"


def test_generation_tree_and_context_over_http(client: TestClient) -> None:
    pid = client.post("/v1/projects", json={"name": "Tree"}).json()["id"]
    node = {"model": "tiny", "prompt": "The sea", "output": " rose"}
    root = client.post(f"/v1/projects/{pid}/generations", json=node).json()
    child = client.post(
        f"/v1/projects/{pid}/generations",
        json={**node, "prompt": "The sea rose", "output": ".", "parent_id": root["id"]},
    ).json()
    assert child["parent_id"] == root["id"]
    assert client.get(f"/v1/generations/{root['id']}").json()["children"] == [child["id"]]
    bad = client.post(f"/v1/projects/{pid}/generations", json={**node, "parent_id": 999})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "parent_id"
    assert client.get("/v1/generations/999").status_code == 404
    client.put(f"/v1/projects/{pid}/bible", json={"memory": "M", "note_depth": 0})
    client.post(f"/v1/projects/{pid}/lore", json={"name": "Sea", "text": "SEA.", "keys": ["sea"]})
    context = client.post(
        "/v1/studio/context", json={"text": "The sea", "project_id": pid, "max_tokens": 8}
    ).json()
    assert context["prompt"] == "M\n\nSEA.\n\nThe sea" and context["active"] == ["Sea"]
    assert context["tokens"] == len(context["prompt"]) and context["budget"] == 64 - 8
    too_much = client.post(
        "/v1/studio/context", json={"text": "x", "memory": "m" * 80, "max_tokens": 8}
    )
    assert too_much.status_code == 400 and "memory" in too_much.json()["error"]["message"]
    depth = client.put(f"/v1/projects/{pid}/bible", json={"note_depth": 500})
    assert depth.status_code == 400


def test_studio_tasks_are_nodes_under_the_generation_they_work_on(client: TestClient) -> None:
    pid = client.post("/v1/projects", json={"name": "Branches"}).json()["id"]
    node = {"model": "tiny", "prompt": "The sea", "output": " rose over the town"}
    root = client.post(f"/v1/projects/{pid}/generations", json=node).json()
    task = {"project_id": pid, "parent_id": root["id"], "params": {"max_new_tokens": 12}}
    works = [
        client.post("/v1/studio/describe", json={**task, "text": "rose over the town"})
        for _ in range(2)
    ]
    assert all(work.status_code == 200 for work in works), works[0].text
    made = [work.json()["generation_id"] for work in works]
    assert client.get(f"/v1/generations/{root['id']}").json()["children"] == made
    kept = client.get(f"/v1/generations/{made[0]}").json()
    assert kept["task"] == "describe" and kept["parent_id"] == root["id"]
    assert kept["siblings"] == made  # two descriptions of one passage: alternatives
    assert kept["params"]["parts"] == works[0].json()["parts"]  # kept, to offer again

    # A parent the node cannot hang under is a 400 naming it, before any work is done.
    other = client.post("/v1/projects", json={"name": "Other"}).json()["id"]
    elsewhere = client.post("/v1/studio/describe", json={**task, "text": "x", "project_id": other})
    orphan = client.post("/v1/studio/describe", json={"text": "x", "parent_id": root["id"]})
    missing = client.post("/v1/studio/describe", json={**task, "text": "x", "parent_id": 999})
    for bad in (elsewhere, orphan, missing):
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "parent_id", bad.text
    assert len(client.get(f"/v1/projects/{pid}/generations").json()["data"]) == 3
    assert client.get(f"/v1/projects/{other}/generations").json()["data"] == []


def test_story_routes_refuse_clearly(client: TestClient) -> None:
    started = client.post("/v1/stories", json={"premise": "a robot who discovers love"}).json()
    pid = started["project"]["id"]
    assert started["story"]["bible"] is None and started["story"]["chapters"] == 3
    early = client.post(f"/v1/projects/{pid}/story/chapters/1", json={"stream": False})
    assert early.status_code == 400 and "plan the story first" in early.json()["error"]["message"]
    broken = client.put(f"/v1/projects/{pid}/story", json={**started["story"], "scenes": 3})
    assert broken.status_code == 400 and "scenes" in broken.json()["error"]["message"]
    plain = client.post("/v1/projects", json={"name": "Plain"}).json()["id"]
    assert client.get(f"/v1/projects/{plain}/story").status_code == 404
    assert client.post("/v1/stories", json={"premise": "  "}).status_code == 400
    bad = client.post("/v1/stories/import", json={"story": {"premise": "x"}})
    assert bad.status_code == 400 and "lang" in bad.json()["error"]["message"]


def test_story_chapters_are_nodes_a_reroll_a_sibling(client: TestClient) -> None:
    started = client.post("/v1/stories", json={"premise": "a robot", "chapters": 2}).json()
    pid = started["project"]["id"]
    bible = {"title": "T", "setting": "a city", "style": "plain", "synopsis": "Ada learns."}
    bible["characters"] = [{"name": "Ada", "description": "a curious robot"}]
    scenes = [{"beat": "Ada wakes up."}, {"beat": "Ada meets Bo."}]
    planned = client.put(
        f"/v1/projects/{pid}/story", json={**started["story"], "bible": bible, "scenes": scenes}
    )
    assert planned.status_code == 200, planned.text
    texts = []
    for number, seed in ((1, 1), (1, 2), (2, 3)):  # chapter 1, its re-roll, chapter 2
        written = client.post(
            f"/v1/projects/{pid}/story/chapters/{number}",
            json={"stream": False, "model": "tiny", "params": {"seed": seed}},
        )
        assert written.status_code == 200, written.text
        texts.append(written.json()["scenes"][number - 1]["text"])
    nodes = client.get(f"/v1/projects/{pid}/generations").json()["data"]
    assert [(g["task"], g["prompt"], g["output"]) for g in nodes] == [
        ("chapter", "Chapter 1: Ada wakes up.", texts[0]),
        ("chapter", "Chapter 1: Ada wakes up.", texts[1]),
        ("chapter", "Chapter 2: Ada meets Bo.", texts[2]),
    ]
    first, reroll, second = (g["id"] for g in nodes)
    assert client.get(f"/v1/generations/{first}").json()["siblings"] == [first, reroll]
    # Chapter 2 hangs under the chapter 1 the story now holds.
    assert client.get(f"/v1/generations/{reroll}").json()["children"] == [second]


def test_a_story_step_stops_at_the_next_token_once_stopped() -> None:
    import threading

    from musegpt.generation.scheduler import Cancelled
    from musegpt.server.story_api import StoppableEngine

    engine = tiny_engine()
    stop = threading.Event()
    stoppable = StoppableEngine(engine, stop)
    same = {"max_new_tokens": 12, "seed": 4}
    assert stoppable.generate("The sea", **same) == engine.generate("The sea", **same)
    assert stoppable.max_batch == engine.max_batch
    stop.set()
    with pytest.raises(Cancelled):
        stoppable.generate("The sea", **same)
