"""Reranking without a scorer, variations of a picture (`ImageModel.vary` and
`POST /v1/images/variations`), `musegpt.load` of an image model and tag captions, on the
tiny real circle model the other picture tests share."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import requests
from images_helpers import continued_records, tiny_image_model
from PIL import Image, ImageDraw
from test_server_helpers import running_server, tiny_engine

import musegpt
from musegpt.images import ImageModel, ImageRequestError
from musegpt.images.train import Picture, encode_records, tag_captions
from musegpt.server import ServerSettings, create_app
from musegpt.server.images_api import serve_image_models

TIMEOUT = 120  # seconds any one request may take: a hung server fails the test


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ImageModel:
    return tiny_image_model(tmp_path_factory)


def tokens(model: ImageModel, picture: Image.Image) -> list[int]:
    return model.tokenizer.encode_image(picture)


def test_rerank_needs_a_scorer_and_checks_its_range(tiny: ImageModel) -> None:
    # a model file without a scorer draws as before, and says why it cannot rerank
    assert tiny.scorer is None
    pictures = tiny.draw("a red circle", n=2, size=8, seed=3)
    assert all(p.info["score"] == "" and p.info["rerank"] == "1" for p in pictures)
    with pytest.raises(ImageRequestError, match="rerank needs a caption-picture scorer"):
        tiny.draw("a red circle", rerank=4)
    for bad in (0, 33):
        with pytest.raises(ImageRequestError, match="rerank must be between 1 and 32"):
            tiny.draw("a red circle", rerank=bad)


def test_vary_keeps_the_top_rows_and_redraws_the_rest(tiny: ImageModel) -> None:
    source = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(source).ellipse((8, 8, 56, 56), fill="blue")
    grid = tiny.tokenizer.grid
    original = tokens(tiny, source)
    variations = tiny.vary(source, n=4, size=32, seed=1, keep=0.5, temperature=1.5)
    assert [v.size for v in variations] == [(32, 32)] * 4
    half = grid // 2 * grid
    redrawn = [tokens(tiny, v) for v in variations]
    assert all(t[:half] == original[:half] for t in redrawn)
    assert any(t[half:] != original[half:] for t in redrawn)
    assert variations[0].info["kept_tokens"] == str(half)
    # with a caption, the redrawn rows follow it: a blank top row, then a red circle
    blank = Image.new("RGB", (64, 64), "white")
    red = tiny.vary(blank, n=2, size=64, seed=1, keep=0.125, prompt="a red circle", temperature=0)
    for picture in red:
        middle = np.asarray(picture, dtype=np.float64)[24:40, 16:48].reshape(-1, 3).mean(axis=0)
        assert middle[0] > 150 and middle[2] < 100, middle
    for keep in (0.0, 1.0):
        with pytest.raises(ImageRequestError, match="keep"):
            tiny.vary(source, keep=keep)


def test_musegpt_load_gives_an_image_model_that_draws(
    tiny: ImageModel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.getbasetemp() / "tiny-image-model" / "run" / "best"
    model = musegpt.load(str(path))
    assert isinstance(model, ImageModel)
    pictures = model.draw("a green circle", n=2, size=16, seed=1)
    assert [(p.mode, p.size) for p in pictures] == [("RGB", (16, 16))] * 2
    assert not isinstance(musegpt.load("poetry"), ImageModel)


def test_tag_captions_add_one_record_per_language(tiny: ImageModel, tmp_path: Path) -> None:
    picture = Picture(
        tmp_path / "apple.png", ("red apple", "红苹果"), "tiny", "food", "train", "set-1f34e",
        (("apple", "fruit", "red", "ripe"), ("水果", "苹果")),
    )  # fmt: skip
    extra = tag_captions(picture)
    assert len(extra) == 2 and len(extra[0].split()) == 3
    assert set(extra[0].split()) <= {"apple", "fruit", "red", "ripe"}
    assert sorted(extra[1]) == sorted("水果苹果")
    pixels = np.full((1, 8, 8, 3), 255, dtype=np.uint8)
    plain = encode_records(tiny.tokenizer, [picture], pixels)
    tagged = encode_records(tiny.tokenizer, [picture], pixels, with_tags=True)
    assert len(tagged) == len(plain) + 2
    assert tiny.tokenizer.decode(tagged[-1][: tiny.tokenizer.caption_length].tolist()).endswith(
        extra[-1]
    )


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, tiny: ImageModel) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("variations-server")
    app = create_app({"tiny": tiny_engine()}, ServerSettings(data_dir=folder))
    serve_image_models(app, {"circles": tiny})
    with running_server(app) as base:
        yield base


def png(colour: str = "red") -> bytes:
    picture = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(picture).ellipse((8, 8, 56, 56), fill=colour)
    out = BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the client marks DALL-E 2 routes
def test_the_official_openai_client_makes_variations(url: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)
    answer = client.images.create_variation(
        image=("red.png", png()), n=2, size="256x256", response_format="b64_json"
    )
    assert answer.data is not None and len(answer.data) == 2
    picture = Image.open(BytesIO(base64.b64decode(answer.data[0].b64_json or "")))
    assert picture.size == (256, 256)
    top = np.asarray(picture.convert("RGB"), dtype=np.float64)[64:112, 96:160].reshape(-1, 3)
    assert top.mean(axis=0)[0] > 150  # the kept top rows are the red circle's


def test_a_variation_is_served_at_its_url_with_its_provenance(url: str) -> None:
    response = requests.post(
        url + "/v1/images/variations",
        files={"image": ("blue.png", png("blue"), "image/png")},
        data={"n": "1", "size": "512x512", "seed": "4", "prompt": "a blue circle"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    entry = response.json()["data"][0]
    picture = requests.get(entry["url"], timeout=TIMEOUT)
    assert Image.open(BytesIO(picture.content)).size == (512, 512)
    provenance = requests.get(entry["url"][: -len("png")] + "json", timeout=TIMEOUT).json()
    assert provenance["prompt"] == "a blue circle" and provenance["seed"] == 4


@pytest.mark.parametrize(
    ("files", "data", "param"),
    [
        ({"image": ("x.png", b"not a picture", "image/png")}, {}, "image"),
        ({"image": ("x.png", png(), "image/png")}, {"size": "300x300"}, "size"),
        ({"image": ("x.png", png(), "image/png")}, {"n": "11"}, "n"),
        ({"image": ("x.png", png(), "image/png")}, {"keep": "1.5"}, "keep"),
        ({}, {"n": "1"}, "image"),
    ],
)
def test_bad_variation_requests_are_openai_error_objects(
    url: str, files: dict[str, tuple[str, bytes, str]], data: dict[str, str], param: str
) -> None:
    response = requests.post(
        url + "/v1/images/variations", files=files or None, data=data, timeout=TIMEOUT
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error


def test_train_images_continues_from_a_model_with_tag_captions(
    tiny: ImageModel, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import json

    folder = tmp_path_factory.getbasetemp() / "tiny-image-model" / "pictures"
    rows = [json.loads(line) for line in (folder / "images.jsonl").read_text().splitlines()]
    tagged = tmp_path / "tagged"
    (tagged / "images").mkdir(parents=True)
    lines = []
    for row in rows:
        Image.open(folder / row["path"]).save(tagged / row["path"])
        colour = row["caption_en"].split()[1]
        lines.append(json.dumps({**row, "tags_en": [colour, "round", "circle"]}))
    (tagged / "images.jsonl").write_text("\n".join(lines) + "\n")
    _, texts = continued_records(
        tmp_path_factory, tiny, tagged, tmp_path / "run", "--tags", batch_size=8, steps=4
    )
    assert len(texts) >= 2 * len(rows) and any("circle" in t and "round" in t for t in texts)
