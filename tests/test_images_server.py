"""`/v1/images/generations` against a real server (uvicorn on a loopback port) drawing with a
tiny real image model: the 2021 article's client code unchanged apart from the host,
OpenAI's current shape, the PNGs served back, provenance in the works library, errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import requests
from images_helpers import remembering_image_model, tiny_image_model
from PIL import Image
from test_server_helpers import running_server, tiny_engine

from musegpt.images import ImageModel
from musegpt.server import ServerSettings, create_app
from musegpt.server.images_api import serve_image_models
from musegpt.store import WorksStore

TIMEOUT = 120  # seconds any one request may take: a hung server fails the test


@pytest.fixture(scope="module")
def picture_model(tmp_path_factory: pytest.TempPathFactory) -> ImageModel:
    return tiny_image_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, picture_model: ImageModel
) -> Iterator[tuple[str, WorksStore, Path]]:
    folder = tmp_path_factory.mktemp("images-server")
    store = WorksStore(folder / "works.db")
    app = create_app({"tiny": tiny_engine()}, ServerSettings(data_dir=folder), store)
    remembering = remembering_image_model(tmp_path_factory)
    serve_image_models(app, {"circles": picture_model, "remembering": remembering})
    with running_server(app) as base:
        yield base, store, folder


@pytest.fixture(scope="module")
def url(server: tuple[str, WorksStore, Path]) -> str:
    return server[0]


def test_the_articles_client_code_gets_a_picture(url: str) -> None:
    # Article 004's code as printed, only QUERY_URL points at this server.
    QUERY_URL = url + "/v1/images/generations"

    def generate_image(prompt: str, model: str, api_key: str) -> str:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {api_key}",
        }
        data: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "num_images": 1,
            "size": "512x512",
            "response_format": "url",
        }
        response = requests.post(QUERY_URL, headers=headers, json=data, timeout=TIMEOUT)
        response.raise_for_status()
        return str(response.json()["data"][0]["url"])

    image_url = generate_image("a red circle", "image-alpha-001", "your_api_key")
    response = requests.get(image_url, timeout=TIMEOUT)
    img = Image.open(BytesIO(response.content))
    assert response.headers["content-type"] == "image/png"
    assert img.format == "PNG" and img.size == (512, 512)
    assert img.text["prompt"] == "a red circle" and img.text["model"] == "run"  # type: ignore[attr-defined]


def _post(url: str, **body: Any) -> requests.Response:
    return requests.post(url + "/v1/images/generations", json=body, timeout=TIMEOUT)


def test_openai_shape_b64_json_and_the_same_seed_draws_the_same(url: str) -> None:
    body = {"prompt": "a blue circle", "n": 3, "size": "256x256", "seed": 7}
    first = _post(url, **body, response_format="b64_json").json()
    assert isinstance(first["created"], int) and len(first["data"]) == 3
    pictures = [
        Image.open(BytesIO(base64.b64decode(item["b64_json"]))).convert("RGB")
        for item in first["data"]
    ]
    assert all(p.size == (256, 256) for p in pictures)
    again = _post(url, **body).json()  # as URLs this time
    fetched = [
        Image.open(BytesIO(requests.get(item["url"], timeout=TIMEOUT).content)).convert("RGB")
        for item in again["data"]
    ]
    assert [p.tobytes() for p in fetched] == [p.tobytes() for p in pictures]
    assert len({item["id"] for item in first["data"] + again["data"]}) == 6  # each kept anew


def test_every_picture_is_kept_with_its_provenance(
    server: tuple[str, WorksStore, Path],
) -> None:
    url, store, folder = server
    project = store.create_project("Circles", kind="pictures")
    answer = _post(
        url, prompt="a green circle", n=2, size="256x256", seed=3, user="ada",
        project_id=project["id"],
    ).json()  # fmt: skip
    generations = store.generations(project["id"])
    assert [g["id"] for g in generations] == [item["generation_id"] for item in answer["data"]]
    for generation, item in zip(generations, answer["data"], strict=True):
        assert generation["task"] == "image" and generation["model"] == "run"
        assert generation["prompt"] == "a green circle"
        assert generation["params"]["seed"] == 3 and generation["params"]["user"] == "ada"
        # Left out of the request, the model's own sampling settings are recorded as used.
        used = [generation["params"][key] for key in ("temperature", "top_k", "guidance")]
        assert all(isinstance(value, int | float) for value in used), used
        assert generation["output"] == f"/v1/images/files/{item['id']}.png"
        assert (folder / "images" / f"{item['id']}.png").is_file()
    info = requests.get(f"{url}/v1/images/files/{answer['data'][1]['id']}.json", timeout=TIMEOUT)
    assert info.json()["seed"] == 3 and info.json()["index"] == 1


def test_save_a_picture_into_a_project(server: tuple[str, WorksStore, Path]) -> None:
    url, store, _ = server
    project = store.create_project("Album", kind="pictures")
    item = _post(url, prompt="an orange circle", size="256x256", seed=1).json()["data"][0]
    saved = requests.post(
        f"{url}/v1/images/files/{item['id']}/save",
        json={"project_id": project["id"]},
        timeout=TIMEOUT,
    ).json()
    assert saved["kind"] == "image" and saved["title"] == "an orange circle"
    assert saved["text"] == f"![an orange circle](/v1/images/files/{item['id']}.png)\n"
    versions = store.versions(saved["id"])
    assert versions[-1]["generation_id"] == item["generation_id"]


def test_image_models_lists_the_default_and_its_styles(url: str) -> None:
    listing = requests.get(url + "/v1/images/models", timeout=TIMEOUT).json()
    assert listing["default"] == "circles"
    assert listing["aliases"] == {"image-alpha-001": "circles"}
    assert listing["data"][0]["styles"] == ["tiny"]


@pytest.mark.parametrize(
    ("body", "status", "param", "says"),
    [
        ({"prompt": "a red circle", "size": "300x300"}, 400, "size", "256x256, 512x512"),
        ({"prompt": "a red circle", "n": 11}, 400, "n", "at most 10"),
        ({"prompt": "a red circle", "num_images": 50}, 400, "num_images", "at most 10"),
        ({"prompt": "a red circle", "n": 2, "num_images": 3}, 400, "n", "not both"),
        ({"prompt": ""}, 400, "prompt", "prompt"),
        ({"prompt": "a red circle", "style": "cubist"}, 400, "style", "unknown style"),
        ({"prompt": "a red circle", "response_format": "gif"}, 400, "response_format", ""),
        ({"prompt": "a red circle", "model": "dall-e-9"}, 404, "model", "dall-e-9"),
        ({"prompt": "a red circle", "model": "../../etc/passwd"}, 404, "model", "not a model"),
        ({"prompt": "a red circle", "project_id": 999}, 404, None, "project"),
        ({"prompt": "a red circle", "colour": "red"}, 400, "colour", "unknown parameter"),
        ({"prompt": "a red circle", "guidance": 0}, 400, "guidance", "greater than 0"),
    ],
)
def test_bad_requests_are_openai_error_objects(
    url: str, body: dict[str, Any], status: int, param: str | None, says: str
) -> None:
    response = _post(url, **body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and says in error["message"]
    assert error["type"] == ("invalid_request_error" if status == 400 else "not_found_error")


@pytest.mark.parametrize(
    "name", ["0123456789abcdef0123456789abcdef.png", "..%2F..%2Fworks.db", "nothing.txt"]
)
def test_unknown_picture_files_are_404(url: str, name: str) -> None:
    response = requests.get(f"{url}/v1/images/files/{name}", timeout=TIMEOUT)
    assert response.status_code == 404 and "error" in response.json()  # never the file


def test_with_api_keys_only_the_picture_itself_is_open(
    tmp_path: Path, picture_model: ImageModel
) -> None:
    settings = ServerSettings(data_dir=tmp_path, api_keys=("sesame",))
    app = create_app({"tiny": tiny_engine()}, settings, WorksStore(tmp_path / "works.db"))
    serve_image_models(app, {"circles": picture_model})
    with running_server(app) as base:
        body = {"prompt": "a red circle", "size": "256x256"}
        assert _post(base, **body).status_code == 401
        answer = requests.post(
            base + "/v1/images/generations",
            json=body,
            headers={"Authorization": "Bearer sesame"},
            timeout=TIMEOUT,
        ).json()
        picture_url = answer["data"][0]["url"]
        # As the article's client does: the URL is fetched with no key (it is unguessable).
        assert requests.get(picture_url, timeout=TIMEOUT).status_code == 200
        assert (
            requests.get(picture_url[: -len(".png")] + ".json", timeout=TIMEOUT).status_code == 401
        )
        save = requests.post(
            picture_url[: -len(".png")] + "/save", json={"project_id": 1}, timeout=TIMEOUT
        )
        assert save.status_code == 401


def test_the_official_openai_client_draws(url: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)
    answer = client.images.generate(
        model="image-alpha-001", prompt="a green circle", n=2, size="256x256",
        response_format="b64_json",
    )  # fmt: skip
    assert answer.data is not None and len(answer.data) == 2
    picture = Image.open(BytesIO(base64.b64decode(answer.data[0].b64_json or "")))
    assert picture.size == (256, 256)


def test_revised_prompt_is_the_caption_the_model_read(url: str) -> None:
    """A model that keeps its training split draws a paraphrase as the trained name and says
    so in DALL-E 3's `revised_prompt`; `expand: false` draws it as written."""
    body = {"model": "remembering", "prompt": "two big red circles", "size": "256x256"}
    answer = requests.post(url + "/v1/images/generations", json=body, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"][0]["revised_prompt"] == "a red circle"
    literal = requests.post(
        url + "/v1/images/generations", json={**body, "expand": False}, timeout=TIMEOUT
    )
    assert literal.json()["data"][0]["revised_prompt"] == "two big red circles"
    plain = requests.post(
        url + "/v1/images/generations",
        json={**body, "model": "circles", "expand": True},
        timeout=TIMEOUT,
    )
    assert plain.status_code == 400
    error = plain.json()["error"]
    assert error["param"] == "expand" and "no training vocabulary" in error["message"]
