"""The default model (Gemma 3 270M through llama.cpp) behind the server: a few tokens
each way, so unchanged OpenAI client code gets completions from it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from musegpt.engines.default_model import default_model_path
from musegpt.engines.llama import LlamaCppEngine
from musegpt.server import create_app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    # One thread: on a shared CI machine llama.cpp's spinning threads cost more than they give.
    engine = LlamaCppEngine.load(default_model_path(), name="default", threads=1)
    with TestClient(create_app({engine.name: engine})) as c:
        yield c


def test_default_model_completes_streams_and_chats(client: TestClient) -> None:
    model = client.get("/v1/models").json()["data"][0]
    assert model["backend"] == "llama.cpp"
    body = {"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}
    whole = client.post("/v1/completions", json=body).json()
    assert whole["usage"]["completion_tokens"] == 4
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        lines = [ln[6:] for ln in response.read().decode().splitlines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    text = "".join(json.loads(ln)["choices"][0]["text"] for ln in lines[:-1])
    assert text == whole["choices"][0]["text"]
    chat = client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 4,
            "seed": 1,
        },
    )
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["role"] == "assistant"
