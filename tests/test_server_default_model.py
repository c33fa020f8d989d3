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
def engine() -> LlamaCppEngine:
    # One thread: on a shared CI machine llama.cpp's spinning threads cost more than they give.
    return LlamaCppEngine.load(default_model_path(), name="default", threads=1)


@pytest.fixture(scope="module")
def client(engine: LlamaCppEngine) -> Iterator[TestClient]:
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


def test_no_special_token_is_ever_chosen_unless_asked_for(
    engine: LlamaCppEngine, client: TestClient
) -> None:
    tokenizer = engine.tokenizer
    (image,) = engine.llama.tokenize(b"<start_of_image>", add_bos=False, special=True)
    (table,) = engine.llama.tokenize(b"<table>", add_bos=False, special=True)
    (end_of_turn,) = engine.llama.tokenize(b"<end_of_turn>", add_bos=False, special=True)
    special = tokenizer.special_ids
    assert {image, tokenizer.eot_id, end_of_turn} <= special and table not in special
    assert {tokenizer.eot_id, end_of_turn} <= tokenizer.stop_ids
    # Every special token pushed to the top, the stops aside: none is chosen, sampled or not.
    push = {str(t): 100.0 for t in special - tokenizer.stop_ids}
    for how in ({"temperature": 0}, {"temperature": 1.0, "seed": 5}):
        body = {"prompt": "Once upon a time", "max_tokens": 4, "logprobs": 0, **how}
        reply = client.post("/v1/completions", json={**body, "logit_bias": push})
        assert reply.status_code == 200, reply.text
        ids = reply.json()["choices"][0]["logprobs"]["token_ids"]
        assert len(ids) == 4 and not set(ids) & special
    asked = client.post(
        "/v1/completions",
        json={
            "prompt": "Once upon a time",
            "max_tokens": 2,
            "temperature": 0,
            "logit_bias": {str(image): 100},
            "allow_special_tokens": True,
        },
    )
    assert asked.json()["choices"][0]["text"] == "<start_of_image>" * 2
