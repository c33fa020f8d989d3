"""`/v1/models` says what each model makes (`kind`) from the model itself, not its name: a
user's own ABC model under any name is `music`, the packaged poetry model (a character
model too) and a tiny text model are `text`, and the image model the server draws with is
listed as `image`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_server_helpers import tiny_engine

from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.engines.registry import find_model
from musegpt.server import ServerSettings, create_app

WEIGHTS = Path(find_model("abc-folk").path).parent


def own_model(folder: Path, packaged: str) -> Path:
    """A packaged model's file copied into a run folder, as a user's own training leaves it."""
    best = folder / "runs" / f"my-{packaged}" / "best"
    best.mkdir(parents=True)
    shutil.copy(WEIGHTS / f"{packaged}.safetensors", best / "model.safetensors")
    return best


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("kinds")
    engines = {
        "tiny": tiny_engine(),
        "my-tunes": MuseGPTEngine.load(own_model(folder, "abc-folk"), name="my-tunes"),
        "verses": MuseGPTEngine.load(own_model(folder, "poetry"), name="verses"),
    }
    with TestClient(create_app(engines, ServerSettings(data_dir=folder))) as c:
        yield c


def test_each_model_is_listed_with_the_kind_it_makes(client: TestClient) -> None:
    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert {name: m["kind"] for name, m in listed.items()} == {
        "tiny": "text",
        "my-tunes": "music",  # an ABC model, whatever it is called
        "verses": "text",
        "icons": "image",  # the packaged image model the images API draws with
    }
    # listed from its file and ready to draw, loaded on its first drawing
    assert (listed["icons"]["ready"], listed["icons"]["loaded"]) == (True, False)
    assert client.get("/v1/models/my-tunes").json()["kind"] == "music"
    assert client.get("/v1/models/icons").json()["kind"] == "image"
    assert client.get("/v1/models/nothing").status_code == 404


def test_a_music_model_composes_under_its_own_name(client: TestClient) -> None:
    body = {"request": "a jig in D", "bars": 4, "seed": 1, "model": "my-tunes"}
    tune = client.post("/v1/music/compose", json=body)
    assert tune.status_code == 200, tune.text
    assert tune.json()["check"]["bars_right"] == 4


@pytest.mark.parametrize(
    ("adapter", "says"),
    [
        ("nope", "unknown adapter 'nope'; known: auto, none, gemma3-270m:stage"),
        ("stage", "the adapter gemma3-270m:stage is for gemma3-270m, not tiny"),
    ],
)
def test_a_studio_adapter_the_model_cannot_take_is_a_400_before_any_work(
    client: TestClient, adapter: str, says: str
) -> None:
    body = {"model": "tiny", "text": "two strangers on a bench", "adapter": adapter}
    answer = client.post("/v1/studio/script", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "adapter" and says in error["message"]


def test_a_model_served_by_its_run_path_goes_by_the_runs_name(tmp_path: Path) -> None:
    # `musegpt serve -m runs/baby/best` serves "baby" (it used to be "best", for every run).
    best = own_model(tmp_path, "poetry")
    assert find_model(str(best)).name == "my-poetry"
    assert find_model(str(best / "model.safetensors")).name == "my-poetry"
    assert find_model(str(WEIGHTS / "poetry.safetensors")).name == "poetry"
