"""The official `openai` client (current major version) and the 0.x call shape work
against the server unchanged; Schemathesis over the OpenAPI schema finds no 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from test_server_helpers import running_server, tiny_engine

from musegpt.server import ServerSettings, create_app
from musegpt.store import WorksStore

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("openai")
    settings = ServerSettings(api_keys=("sk-test",), max_tokens=64, data_dir=folder)
    store = WorksStore(folder / "works.db")
    with running_server(create_app({"tiny": tiny_engine()}, settings, store)) as base:
        yield base


def test_openai_client_completions_chat_and_models(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0)
    assert [m.id for m in client.models.list() if getattr(m, "kind", None) == "text"] == ["tiny"]
    done = client.completions.create(model="tiny", prompt="The sea", max_tokens=8, temperature=0)
    assert done.choices[0].finish_reason == "length" and done.usage.completion_tokens == 8
    pieces = client.completions.create(
        model="tiny", prompt="The sea", max_tokens=8, temperature=0, stream=True
    )
    assert "".join(p.choices[0].text for p in pieces if p.choices) == done.choices[0].text
    chat = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=6,
        seed=2,
        extra_body={"top_k": 10},
    )
    assert chat.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=6,
        seed=2,
        stream=True,
        extra_body={"top_k": 10},
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in stream) == chat.choices[0].message.content
    )
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="tiny", prompt="x", temperature=-2)
    assert bad.value.body["param"] == "temperature"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()


def test_openai_0x_completion_create_contract(url: str) -> None:
    """What `openai.Completion.create(engine=..., prompt=..., temperature=..., max_tokens=...)`
    sends with openai<1 (api_base ending in /v1): POST {api_base}/engines/{engine}/completions,
    a JSON body of the other arguments and a bearer key; it reads choices[i].text, and on
    failure the error object's message, type, param and code."""
    headers = {
        "Authorization": "Bearer sk-test",
        "Content-Type": "application/json",
        "User-Agent": "OpenAI/v1 PythonBindings/0.28.1",
    }
    body = {"prompt": "She opened", "temperature": 0, "max_tokens": 5}
    reply = httpx.post(f"{url}/v1/engines/tiny/completions", json=body, headers=headers)
    assert reply.status_code == 200
    answer = reply.json()
    assert answer["object"] == "text_completion" and answer["usage"]["completion_tokens"] == 5
    # the engine's route answers as /v1/completions does for that model (greedy: the same)
    same = httpx.post(f"{url}/v1/completions", json={**body, "model": "tiny"}, headers=headers)
    assert answer["choices"][0]["text"] == same.json()["choices"][0]["text"] != ""
    bad = httpx.post(
        f"{url}/v1/engines/tiny/completions", json={**body, "max_tokens": -1}, headers=headers
    )
    assert bad.status_code == 400
    assert set(bad.json()["error"]) == {"message", "type", "param", "code"}


def test_schemathesis_finds_no_server_errors(url: str) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    checked = 0
    for operation in schema.get_all_operations():
        op = operation.ok()
        if op.path.startswith("/v1/studio") or op.path.startswith("/v1/projects/import"):
            continue  # long-running tasks; their validation is covered elsewhere

        @settings(
            max_examples=8,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy())
        def check(case: object) -> None:
            response = case.call(base_url=url, headers={"Authorization": "Bearer sk-test"})  # type: ignore[attr-defined]
            assert response.status_code < 500, (case, response.text)  # type: ignore[attr-defined]
            assert response.status_code != 409

        check()
        checked += 1
    assert checked > 10
