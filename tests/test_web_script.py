"""Scripts in the web studio (headless Chromium): a scene written with the shipped `stage`
adapter chosen beside the Write scene button, and with a project's own adapter chosen in the
model menu like every other task (the adapter served again after a restart: a finished run
in the data folder); an adapter the chosen model cannot take is a clear error beside the
toolbar. The menus follow each model's kind: a user's own ABC model, under any name, is in
Tune model and not in Model."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from studio_browser import finished, studio_tab
from test_adapter_restore import finished_run
from test_server_helpers import running_server
from test_server_models import own_model

from musegpt.engines.base import Engine
from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.server import ServerSettings, create_app
from musegpt.store import WorksStore

OWN = "works-Sea-letters"
SITUATION = "Two strangers miss the last train and share a bench till dawn."
SCENE_HEADING = re.compile(r"^(INT|EXT)[. ]", re.MULTILINE)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, gemma: Engine) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("web-script")
    letters = json.dumps({"model": OWN, "project": "Sea letters"})
    finished_run(folder / "adapters", f"{OWN}-20261130-120000-1", None, letters)
    engines = {
        "gemma3-270m": gemma,
        "my-tunes": MuseGPTEngine.load(own_model(folder, "abc-folk"), name="my-tunes"),
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MUSEGPT_CONFIG", str(folder / "config"))
        settings = ServerSettings(data_dir=folder, max_tokens=200)
        app = create_app(engines, settings, WorksStore(folder / "works.db"))
        with running_server(app) as base:
            end = time.monotonic() + 120  # the restored adapter loads in the background
            while get(f"{base}/health")["models"][OWN] == "loading" and time.monotonic() < end:
                time.sleep(0.2)
            yield base


@pytest.fixture(scope="module")
def page(url: str) -> Iterator[Any]:
    with studio_tab(url) as tab:
        yield tab


def write_scene(page: Any, model: str, adapter: str, seed: int) -> str:
    """The status once the scene is written (seeds that make a scene on each model)."""
    page.select_option("#model", model)
    page.select_option("#script-adapter", adapter)
    page.fill("#script-situation", SITUATION)
    page.fill("#seed", str(seed))
    page.click("#script")
    return finished(page)


def latest_generation(url: str) -> dict[str, Any]:
    projects = get(f"{url}/v1/projects")["data"]
    tree = get(f"{url}/v1/projects/{projects[-1]['id']}/generations")["data"]
    return dict(get(f"{url}/v1/generations/{max(g['id'] for g in tree)}"))


def test_menus_follow_each_models_kind(page: Any) -> None:
    menu = "options => options.map(o => o.value)"
    assert page.eval_on_selector_all("#model option", menu) == ["gemma3-270m", OWN]
    assert page.eval_on_selector_all("#tune-model option", menu) == ["my-tunes"]


def test_a_scene_with_the_stage_adapter(page: Any, url: str) -> None:
    assert write_scene(page, "gemma3-270m", "stage", 3) == "done"
    scene = page.eval_on_selector("#alternatives-list li", "li => li.firstChild.textContent")
    assert SCENE_HEADING.search(scene), scene
    node = latest_generation(url)
    assert node["task"] == "script" and node["output"] == scene
    assert node["params"]["adapter"] == "gemma3-270m:stage"


def test_a_scene_in_the_projects_own_voice(page: Any, url: str) -> None:
    assert write_scene(page, OWN, "none", 1) == "done"
    scene = page.eval_on_selector("#alternatives-list li", "li => li.firstChild.textContent")
    assert SCENE_HEADING.search(scene), scene
    node = latest_generation(url)
    assert node["task"] == "script" and node["model"] == OWN


def test_an_adapter_the_model_cannot_take_is_a_clear_error(page: Any) -> None:
    status = write_scene(page, OWN, "stage", 1)
    error = page.inner_text("#writing-error")
    assert status == error  # shown in the status line too
    assert f"the adapter gemma3-270m:stage is for gemma3-270m, not {OWN}" in error
