"""One registry of studio tasks behind the command line, the server and the evaluations:
the server's poem is `Studio.poem` (same prompt, same defaults, same seed, same poem), a poem
that fails its form is a 422 carrying the checker's reasons, and bad task fields are named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_server_helpers import tiny_engine
from typer.testing import CliRunner

from musegpt.cli.app import app
from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.forms import check, get_form
from musegpt.generation.params import SamplingParams
from musegpt.server import ServerSettings, create_app
from musegpt.studio import TASKS, Studio
from musegpt.studio.evaluate import EVALUATED_TASKS, PROMPT_FIELDS, prompts
from musegpt.studio.registry import task_request


@pytest.fixture(scope="module")
def engine() -> MuseGPTEngine:
    return tiny_engine()


@pytest.fixture()
def client(tmp_path: Path, engine: MuseGPTEngine) -> Iterator[TestClient]:
    settings = ServerSettings(data_dir=tmp_path, max_tokens=64)
    with TestClient(create_app({"tiny": engine}, settings)) as c:
        yield c


def poem_body(**fields: Any) -> dict[str, Any]:
    return {"text": "the sea", **fields}


@pytest.mark.parametrize(
    ("fields", "form"),
    [
        ({"form": "haiku"}, get_form("haiku")),
        ({"form": "limerick", "attempts": 2}, get_form("limerick")),
        ({"form": "wujue", "rhymes": "xinyun"}, get_form("wujue", rhyme_system="xinyun")),
    ],
)
def test_server_poem_is_studio_poem(
    client: TestClient, engine: MuseGPTEngine, fields: dict[str, Any], form: Any
) -> None:
    answer = client.post("/v1/studio/poem", json=poem_body(params={"seed": 2}, **fields))
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert check(result["text"], form).passed and result["passed"] is True
    assert result["report"]["passed"] and result["report"]["form"] == form.name
    # The same call through the Python API: same prompt, defaults and seed, the same poem.
    request = task_request("poem", {"text": "the sea", **fields})
    work = TASKS["poem"].perform(Studio(engine, SamplingParams(seed=2)), request)
    assert result["text"] == work.text and result["meta"] == work.meta


def test_a_poem_that_fails_its_form_is_a_422_with_the_checkers_reasons(
    client: TestClient,
) -> None:
    # Four tokens cannot hold a haiku: every attempt fails the checker.
    body = poem_body(form="haiku", attempts=2, params={"seed": 1, "max_new_tokens": 4})
    answer = client.post("/v1/studio/poem", json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "form_not_met" and "no Haiku after 2 attempt(s)" in error["message"]
    report = check(error["text"], "haiku")
    assert not report.passed and error["reasons"] == list(report.reasons) != []
    assert error["report"]["passed"] is False and error["report"]["reasons"] == error["reasons"]
    # Streamed, the same error (with its reasons) arrives as an event instead of a work.
    events = []
    with client.stream("POST", "/v1/studio/poem", json={**body, "stream": True}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: {"):
                events.append(json.loads(line.removeprefix("data: ")))
    assert [e["error"]["reasons"] for e in events if "error" in e] == [error["reasons"]]
    assert not any(e.get("type") == "work" for e in events)


def test_bad_task_fields_are_400s_naming_the_field(client: TestClient) -> None:
    blank = client.post("/v1/studio/poem", json={"text": "  ", "form": "haiku"}).json()["error"]
    assert blank["param"] == "text" and "the topic is empty" in blank["message"]
    assert "Value error" not in blank["message"]
    rhymes = client.post("/v1/studio/poem", json=poem_body(form="wujue", rhymes="tang"))
    assert rhymes.status_code == 400 and rhymes.json()["error"]["param"] == "rhymes"
    unknown = client.post("/v1/studio/poem", json=poem_body(form="nonsense-form"))
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "form"
    path = client.post("/v1/studio/poem", json=poem_body(form="../../etc/passwd.yaml"))
    assert path.status_code == 400 and "named, not read from files" in path.text
    # A form of a billion lines was built line by line and held the worker.
    huge = client.post("/v1/studio/poem", json=poem_body(form="free:999999999")).json()["error"]
    assert huge["param"] == "form" and "from 1 to 200" in huge["message"]
    checked = client.post("/v1/forms/check", json={"text": "x", "form": "free:999999999"})
    assert checked.status_code == 400 and checked.json()["error"]["param"] == "form"
    plot = client.post("/v1/studio/plot-help", json={"text": "a key melts"}).json()["error"]
    assert plot["param"] == "conflict" and "required" in plot["message"]


def test_every_surface_offers_the_registrys_tasks(client: TestClient) -> None:
    import typer.main

    assert client.get("/v1/studio/tasks").json()["tasks"] == list(TASKS)
    write = typer.main.get_command(app).commands["write"].commands  # type: ignore[attr-defined]
    # `continue` is `musegpt write story --continue FILE`
    assert set(write) == set(TASKS) - {"continue"}
    assert set(EVALUATED_TASKS) <= set(TASKS)


@pytest.mark.parametrize("task", EVALUATED_TASKS)
def test_every_evaluation_prompt_is_a_valid_request(task: str) -> None:
    for lang, items in prompts().items():
        for item in items:
            request = task_request(task, PROMPT_FIELDS[task](item))
            assert request.text.strip(), (task, lang, item)


def test_the_cli_runs_a_task_through_the_registry(tmp_path: Path, engine: MuseGPTEngine) -> None:
    from musegpt.model import save_model

    model = save_model(tmp_path / "tiny", engine.model, engine.tokenizer)
    out = tmp_path / "poem.md"
    args = ["write", "poem", "the sea", "--form", "couplet", "--seed", "3", "-m", str(model)]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    request = task_request("poem", {"text": "the sea", "form": "couplet"})
    work = TASKS["poem"].perform(Studio(engine, SamplingParams(seed=3)), request)
    assert work.text in result.stdout and out.read_text().split("\n\n")[1] == work.text
