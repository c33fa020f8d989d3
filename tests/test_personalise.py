"""Personalisation from the studio over HTTP: an adapter job on a works project trains a
real (tiny) adapter on a thread while the server answers, reports its progress, registers
and serves the adapter; a second job is refused while one runs; a cancelled job stops at the
next step and keeps its checkpoint; too little text or an unknown project is a clear error.

Also the pieces the job stands on: a writer's long paragraphs cut into sentence runs, and a
trainer stopped by its caller or by its time limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from musegpt.adapters.works import pieces, works_settings
from musegpt.engines.base import Engine
from musegpt.server import ServerSettings, create_app
from musegpt.store import WorksStore

# A writer's letters: enough paragraphs for a held-out one, and more than 100 words.
LETTERS = [
    "My dear sister, the sea was grey this morning and the gulls came in early. "
    "I walked to the harbour wall and watched the boats go out one by one.",
    "The keeper's wife sends her regards. She has mended the nets again, and her hands "
    "are raw from the salt, but she will not hear of rest until the season turns.",
    "We had a letter from Father. He writes that the roads are bad and the coach was late, "
    "yet he hopes to be with us before the month is out.",
    "I have been reading the old sermons by lamplight. They are dull, and I confess I "
    "fall asleep over them, but the wind keeps me company.",
    "Tell Mother that the garden is not lost. The roses took the frost badly; the beans "
    "are up, and the hens lay as if nothing had happened.",
    "Yesterday a stranger asked for lodging. He had a sailor's walk and a scholar's hands, "
    "and he paid in coins from a country I could not name.",
    "Write soon, and tell me all the news of town. Your loving sister, Anne.",
]
TINY = {"steps": 2, "seq_len": 32, "layers": 1, "rank": 2, "batch_size": 2, "eval_every": 1}
DEADLINE_S = 600  # a tiny job takes about a minute on a loaded 2-core machine


@pytest.fixture(scope="module")
def client(gemma: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from musegpt.adapters.convert import converter_folder

    try:
        converter_folder()
    except OSError as err:
        pytest.skip(f"llama.cpp's converter is unavailable here: {err}")
    folder = tmp_path_factory.mktemp("personalise")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MUSEGPT_CONFIG", str(folder / "config"))  # the adapter registry
        store = WorksStore(folder / "works.db")
        letters = store.create_project("Sea letters")
        for i in range(0, len(LETTERS), 2):
            text = "\n\n".join(LETTERS[i : i + 2])
            store.create_document(int(letters["id"]), f"Letter {i}", text=text)
        short = store.create_project("Short")
        store.create_document(int(short["id"]), "Note", text="Too little.\n\nTo learn from.")
        settings = ServerSettings(data_dir=folder, max_tokens=32)
        with TestClient(create_app({"gemma3-270m": gemma}, settings, store)) as c:
            yield c


def project_id(client: TestClient, name: str) -> int:
    return int(
        next(p["id"] for p in client.get("/v1/projects").json()["data"] if p["name"] == name)
    )


def wait_for(
    client: TestClient, job: int, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The job once `ready` says so (bounded: fails past the deadline)."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        view = client.get(f"/v1/adapter-jobs/{job}").json()
        if ready(view) or view["state"] == "failed":
            return dict(view)
        time.sleep(0.5)
    raise AssertionError(f"adapter job {job} did not get there in {DEADLINE_S} s: {view}")


def test_a_job_trains_registers_and_serves_the_adapter(client: TestClient) -> None:
    pid = project_id(client, "Sea letters")
    started = client.post(f"/v1/projects/{pid}/adapter", json=TINY)
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["model"] == "works-Sea-letters" and job["state"] == "running"
    # One job at a time: a second is refused (429, not 409) and names the running one.
    again = client.post(f"/v1/projects/{pid}/adapter", json=TINY)
    assert again.status_code == 429
    assert again.json()["error"]["code"] == "adapter_job_running"
    assert f"job {job['id']}" in again.json()["error"]["message"]
    assert client.get("/health").status_code == 200  # the server answers while it trains
    done = wait_for(client, job["id"], lambda j: j["state"] == "done")
    assert done["state"] == "done", done["error"]
    assert done["step"] == 2 and done["loss"] > 0 and done["tokens_per_second"] > 0
    assert done["heldout_perplexity"] > 1 and done["eta_seconds"] == 0
    result = done["result"]
    assert result["base_perplexity"] > 1 and result["adapted_perplexity"] > 1
    assert 0 <= result["adapted_style_distance"] <= 1
    assert Path(result["adapter"]).is_file()
    models = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "works-Sea-letters" in models  # served at once, without a restart
    written = client.post(
        "/v1/completions",
        json={"model": "works-Sea-letters", "prompt": "My dear sister,", "max_tokens": 8},
    )
    assert written.status_code == 200, written.text
    assert written.json()["choices"][0]["text"]


def test_a_cancelled_job_stops_at_the_next_step_and_keeps_its_checkpoint(
    client: TestClient,
) -> None:
    pid = project_id(client, "Sea letters")
    settings = {**TINY, "steps": 5000, "eval_every": 1000}
    job = client.post(f"/v1/projects/{pid}/adapter", json=settings).json()
    training = wait_for(client, job["id"], lambda j: j["step"] >= 1)
    assert training["state"] == "running" and training["eta_seconds"] > 0
    cancelling = client.delete(f"/v1/adapter-jobs/{job['id']}").json()
    assert cancelling["state"] in ("cancelling", "cancelled")
    ended = wait_for(client, job["id"], lambda j: j["state"] == "cancelled")
    assert ended["state"] == "cancelled" and ended["step"] < 5000
    assert (Path(ended["folder"]) / "checkpoint" / "state.pt").is_file()
    assert "checkpoint is kept" in ended["message"]
    # The slot is free again; the refused job shows up as no job at all.
    assert [j["state"] for j in client.get("/v1/adapter-jobs").json()["data"]][-1] == "cancelled"


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/v1/projects/{short}/adapter", None, 400, "at least 100 words"),
        ("/v1/projects/999/adapter", None, 404, "no project '999'"),
        ("/v1/projects/{letters}/adapter", {"steps": 0}, 400, "steps"),
        ("/v1/projects/{letters}/adapter", {"epochs": 3}, 400, "unknown parameter 'epochs'"),
        ("/v1/adapter-jobs/12345", None, 404, "no adapter job 12345"),
    ],
)
def test_bad_requests_are_clear_errors(
    client: TestClient, path: str, body: dict[str, Any] | None, status: int, says: str
) -> None:
    ids = {"short": project_id(client, "Short"), "letters": project_id(client, "Sea letters")}
    url = path.format(**ids)
    response = client.get(url) if "adapter-jobs" in url else client.post(url, json=body)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"]


def test_long_paragraphs_are_cut_into_runs_of_whole_sentences() -> None:
    paragraph = " ".join(f"Sentence number {i} has five words." for i in range(40))
    runs = pieces(paragraph, limit=30)
    assert " ".join(runs) == paragraph  # nothing lost
    assert all(len(r.split()) <= 30 and r.endswith(".") for r in runs)
    quatrain = pieces("床前明月光。疑是地上霜。举头望明月。", limit=12)
    assert quatrain == ["床前明月光。疑是地上霜。", "举头望明月。"]


def test_works_defaults_are_short_and_bounded_and_can_be_changed() -> None:
    settings = works_settings(steps=3, layers=None)
    assert settings.steps == 3 and settings.layers == 4  # None: the default stays
    assert settings.max_minutes is not None and settings.patience is not None
    with pytest.raises(ValueError, match="max-minutes"):
        works_settings(max_minutes=0)


def test_training_stops_in_time_for_the_measurements_that_follow_it() -> None:
    from musegpt.adapters.pipeline import training_deadline

    # 25 minutes from t=100 s; the base model took 120 s to score: scoring with the adapter
    # and the style measure take about 1.5 times that; the last step, evaluation and the
    # converter two minutes.
    assert training_deadline(100.0, 25, 120.0) == 100 + 25 * 60 - 180 - 120
    assert training_deadline(100.0, None, 120.0) is None
