"""The music endpoints on the packaged ABC model: compose, render, errors, provenance."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_server_helpers import tiny_engine

from musegpt.engines.registry import open_engine
from musegpt.music.abc import parse_header
from musegpt.music.tune import SOUNDFONT, parse_abc
from musegpt.server import ServerSettings, create_app
from musegpt.store import WorksStore


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("music")
    engines = {"tiny": tiny_engine(), "abc-folk": open_engine("abc-folk")}
    app = create_app(engines, ServerSettings(data_dir=folder), WorksStore(folder / "works.db"))
    with TestClient(app) as c:
        yield c


def test_compose_writes_the_requested_tune(client: TestClient) -> None:
    body = {"request": "a slow waltz in G major", "bars": 8, "seed": 3}
    tune = client.post("/v1/music/compose", json=body).json()
    header, _ = parse_header(tune["abc"])
    assert (header.metre, header.key, header.rhythm) == ("3/4", "G", "waltz")
    assert tune["model"] == "abc-folk" and tune["constrained"]
    assert tune["check"]["parses"] and tune["check"]["bars_right"] == tune["check"]["bars"]
    assert tune["check"]["metre_ok"]
    parse_abc(tune["abc"])  # music21 reads it
    again = client.post("/v1/music/compose", json=body).json()
    assert again["abc"] == tune["abc"]  # same seed, same tune
    other = client.post("/v1/music/compose", json={**body, "seed": 4}).json()
    assert other["abc"] != tune["abc"]


def test_unconstrained_compose_is_available(client: TestClient) -> None:
    body = {"request": "a reel in D", "bars": 4, "seed": 1, "constrained": False}
    tune = client.post("/v1/music/compose", json=body).json()
    assert not tune["constrained"] and tune["abc"].startswith("X:1\nT:")


def test_compose_keeps_provenance_in_a_project(client: TestClient) -> None:
    project = client.post("/v1/projects", json={"name": "Tunes"}).json()["id"]
    body = {"request": "a jig in A dorian", "bars": 4, "seed": 2, "project_id": project}
    tune = client.post("/v1/music/compose", json=body).json()
    generations = client.get(f"/v1/projects/{project}/generations").json()["data"]
    assert [g["id"] for g in generations] == [tune["generation_id"]]
    assert generations[0]["task"] == "compose" and generations[0]["output"] == tune["abc"]
    assert generations[0]["params"]["seed"] == 2


ABC = "X:1\nT:Scale\nM:4/4\nL:1/8\nK:D\nDEFG ABcd|dcBA GFED|]\n"


def test_render_midi_svg_and_wav(client: TestClient) -> None:
    midi = client.post("/v1/music/render", json={"abc": ABC, "format": "midi"})
    assert midi.status_code == 200 and midi.headers["content-type"] == "audio/midi"
    assert midi.content.startswith(b"MThd")
    svg = client.post("/v1/music/render", json={"abc": ABC, "format": "svg"})
    if shutil.which("abcm2ps"):
        assert svg.status_code == 200 and b"<svg" in svg.content
    else:
        assert svg.status_code == 501 and "abcm2ps" in svg.json()["error"]["message"]
    wav = client.post("/v1/music/render", json={"abc": ABC, "format": "wav"})
    if shutil.which("fluidsynth") and Path(SOUNDFONT).is_file():
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    else:
        assert wav.status_code == 501 and "fluidsynth" in wav.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"abc": "just words", "format": "midi"}, 400, "abc"),
        ({"abc": ABC, "format": "mp3"}, 400, "format"),
        ({"abc": "", "format": "svg"}, 400, "abc"),
    ],
)
def test_bad_render_requests_are_400(
    client: TestClient, body: dict[str, str], status: int, param: str
) -> None:
    response = client.post("/v1/music/render", json=body)
    assert response.status_code == status
    assert response.json()["error"]["param"] == param


def test_bad_compose_requests(client: TestClient) -> None:
    too_many = client.post("/v1/music/compose", json={"bars": 0})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "bars"
    unknown = client.post("/v1/music/compose", json={"model": "nope"})
    assert unknown.status_code == 404


def test_server_without_a_music_model_says_how_to_get_one() -> None:
    with TestClient(create_app({"tiny": tiny_engine()})) as c:
        response = c.post("/v1/music/compose", json={"bars": 2})
    assert response.status_code == 404
    assert "--model abc-folk" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("attack", "named"),
    [
        (ABC + "%%abc-include /etc/hostname\n", "%%abc-include"),
        (ABC + "%%abc-include /dev/zero\n", "%%abc-include"),
        ("X:1\nT:Scale\n%%abc-include /etc/hostname\nK:D\nDEFG|]\n", "%%abc-include"),
        ("X:1\nT:Scale\nI:abc-include /etc/hostname\nK:D\nDEFG|]\n", "I:"),
        (ABC + "[I:abc-include /etc/hostname] DEFG|]\n", "fields inside"),
        (ABC + "\nX:2\nT:Other\nK:D\nDEFG|]\n", "fields inside"),
        ("X:1\nT:Scale\nK:D\nDEFG ABcd|] $include\n", "'$'"),
    ],
)
def test_render_refuses_directives_and_anything_off_the_whitelist(
    client: TestClient, attack: str, named: str
) -> None:
    for fmt in ("svg", "midi", "wav"):
        response = client.post("/v1/music/render", json={"abc": attack, "format": fmt})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "abc" and named in error["message"]


def test_render_drops_comments_and_keeps_only_the_rebuilt_header(client: TestClient) -> None:
    abc = "X:1\nT:Scale % a comment\nC:Trad.\nM:4/4\nL:1/8\nK:D\n% a comment line\n" + (
        "DEFG ABcd|dcBA GFED|]\n"
    )
    midi = client.post("/v1/music/render", json={"abc": abc, "format": "midi"})
    assert midi.status_code == 200 and midi.content.startswith(b"MThd")
