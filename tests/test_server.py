"""The OpenAI-compatible API on a tiny real model: answers, streams, errors, limits."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_server_helpers import tiny_engine

from musegpt.engines.base import Engine
from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.server import ServerSettings, create_app
from musegpt.server.runners import PoolRunner


@pytest.fixture(scope="module")
def engine() -> MuseGPTEngine:
    return tiny_engine()


@pytest.fixture(scope="module")
def client(engine: Engine) -> Iterator[TestClient]:
    settings = ServerSettings(max_tokens=64, max_n=4, max_prompt_tokens=200, max_body_bytes=20_000)
    with TestClient(create_app({"tiny": engine}, settings)) as c:
        yield c


def _events(text: str) -> list[Any]:
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_models_and_health(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"] if m["kind"] == "text"] == ["tiny"]
    assert client.get("/health").json() == {"status": "ok", "models": {"tiny": "ready"}}


def test_completion_matches_the_engine_and_counts_usage(client: TestClient, engine: Engine) -> None:
    body = {"model": "tiny", "prompt": "The sea", "max_tokens": 12, "temperature": 0}
    answer = client.post("/v1/completions", json=body).json()
    expected = engine.complete("The sea", max_new_tokens=12, temperature=0)[0]
    choice = answer["choices"][0]
    assert choice["text"] == expected.text
    assert choice["finish_reason"] == expected.finish_reason
    assert answer["object"] == "text_completion"
    assert answer["usage"] == {"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19}


def test_n_seed_stop_logprobs_and_extra_sampling_fields(client: TestClient) -> None:
    body = {
        "prompt": ["The sea", "wind"],
        "max_tokens": 10,
        "n": 2,
        "seed": 5,
        "stop": "\n",
        "logprobs": 2,
        "top_k": 20,  # a SamplingParams field, sent as an extra body field
        "banned": ["the"],
    }
    first = client.post("/v1/completions", json=body).json()
    again = client.post("/v1/completions", json=body).json()
    assert [c["text"] for c in first["choices"]] == [c["text"] for c in again["choices"]]
    assert [c["index"] for c in first["choices"]] == [0, 1, 2, 3]
    lp = first["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"])
    assert all(len(top) <= 2 for top in lp["top_logprobs"])
    assert all("the" not in c["text"] and "\n" not in c["text"] for c in first["choices"])


def test_streaming_sends_openai_chunks_then_done(client: TestClient, engine: Engine) -> None:
    body = {
        "prompt": "She opened",
        "max_tokens": 15,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with client.stream("POST", "/v1/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.read().decode())
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == engine.complete("She opened", max_new_tokens=15, temperature=0)[0].text
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    # A stream's usage counts the tokens generated, exactly as a whole answer's does.
    prompt_tokens = len(engine.tokenize("She opened"))
    assert events[-2]["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 15,
        "total_tokens": prompt_tokens + 15,
    }


def test_engine_route_and_chat(client: TestClient) -> None:
    old = client.post("/v1/engines/tiny/completions", json={"prompt": "x", "max_tokens": 3})
    assert old.status_code == 200 and old.json()["model"] == "tiny"
    chat = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5, "seed": 1},
    ).json()
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        events = _events(response.read().decode())
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1] == "[DONE]"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "temperature": -1}, "temperature"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "max_tokens": 65}, "max_tokens"),  # over the server's limit
        ({"prompt": "x", "n": 5}, "n"),
        ({"prompt": "x", "top_p": 2}, "top_p"),
        ({"prompt": "x", "no_such_field": 1}, "no_such_field"),
        ({"prompt": "x", "banned_regex": ["("]}, "banned_regex"),
        ({"prompt": "x", "logit_bias": {"a": 1}}, "logit_bias"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "x" * 300}, "prompt"),  # more tokens than the server accepts
        ({"prompt": [999_999]}, "prompt"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(
    client: TestClient, body: dict[str, Any], param: str
) -> None:
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error" and error["message"]


def test_unknown_model_bad_json_and_big_bodies(client: TestClient) -> None:
    missing = client.post("/v1/completions", json={"model": "nope", "prompt": "x"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"
    broken = client.post(
        "/v1/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["error"]["param"] is None
    big = client.post("/v1/completions", json={"prompt": "x" * 30_000})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"


def test_api_keys_guard_everything_but_health(engine: Engine) -> None:
    app = create_app({"tiny": engine}, ServerSettings(api_keys=("s3cret",)))
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/v1/models").status_code == 401
        wrong = c.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_loading_model_is_503(engine: Engine) -> None:
    release = threading.Event()

    def slow_loader() -> Engine:
        release.wait(30)
        return engine

    app = create_app({"tiny": slow_loader}, ServerSettings())
    with TestClient(app) as c:
        loading = c.post("/v1/completions", json={"prompt": "x"})
        assert loading.status_code == 503
        assert loading.json()["error"]["code"] == "model_loading"
        assert c.get("/health").json()["models"] == {"tiny": "loading"}
        release.set()
        for _ in range(100):
            if c.get("/health").json()["models"]["tiny"] == "ready":
                break
            threading.Event().wait(0.05)
        assert c.post("/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 200


def test_max_queue_counts_only_requests_that_wait(engine: Engine) -> None:
    """Requests that start at once are not queued: with no queue at all (max_queue=0) an
    idle server still takes as many requests as it has batch rows."""
    import httpx
    from test_server_helpers import running_server

    app = create_app({"tiny": engine}, ServerSettings(max_queue=0, max_batch_rows=32))
    body = {"prompt": "The sea", "max_tokens": 4}
    with (
        running_server(app) as url,
        httpx.Client(base_url=url, timeout=60) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        codes = list(pool.map(lambda _: client.post("/v1/completions", json=body), range(8)))
    assert [r.status_code for r in codes] == [200] * 8


def test_full_queue_is_429(engine: Engine) -> None:
    import httpx
    from test_server_helpers import running_server

    settings = ServerSettings(max_queue=0, max_batch_rows=1, max_tokens=100_000)
    app = create_app({"tiny": engine}, settings)
    long = {"prompt": "x", "max_tokens": 50_000, "min_new_tokens": 50_000, "stream": True}
    with (
        running_server(app) as url,
        httpx.stream("POST", f"{url}/v1/completions", json=long, timeout=30) as running,
    ):
        lines = running.iter_lines()
        next(lines)  # the only batch row is taken (kept: dropping `lines` hangs up)
        full = httpx.post(f"{url}/v1/completions", json={"prompt": "x"}, timeout=30)
        assert full.status_code == 429
        assert full.json()["error"]["type"] == "rate_limit_error"


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
    text = client.get("/metrics").text
    assert 'musegpt_requests_total{route="/v1/completions",status="200"}' in text
    assert 'musegpt_tokens_total{kind="completion",model="tiny"}' in text
    assert "musegpt_request_seconds_bucket" in text
    assert 'musegpt_queue_depth{model="tiny"} 0' in text


def test_streamed_logprobs_arrive_with_their_text(client: TestClient) -> None:
    body = {"prompt": "The sea", "max_tokens": 12, "temperature": 0, "logprobs": 3}
    whole = client.post("/v1/completions", json=body).json()["choices"][0]["logprobs"]
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        events = _events(response.read().decode())
    streamed: list[str] = []
    for event in events[:-1]:
        lp = event["choices"][0]["logprobs"]
        if lp:
            streamed += lp["tokens"]
    assert streamed == whole["tokens"]


def test_timeout_is_504_and_stops_the_decode(engine: Engine) -> None:
    settings = ServerSettings(request_timeout_s=0.3, max_tokens=100_000)
    app = create_app({"tiny": engine}, settings)
    with TestClient(app) as c:
        body = {"prompt": "x", "max_tokens": 50_000, "min_new_tokens": 50_000}
        late = c.post("/v1/completions", json=body)
        assert late.status_code == 504 and late.json()["error"]["code"] == "timeout"
        runner = app.state.musegpt.models.get("tiny").runner
        for _ in range(100):  # the cancelled decode leaves the batch within a step
            if runner.scheduler.active == 0:
                break
            threading.Event().wait(0.05)
        assert runner.scheduler.active == 0


class OneRowEngine(MuseGPTEngine):
    """A real MuseGPT engine that decodes one row at a time, as llama.cpp does, so the
    server serves it from a pool instead of the batch scheduler."""

    max_batch = 1


def test_timeout_stops_a_pooled_decode_too(engine: MuseGPTEngine) -> None:
    pooled = OneRowEngine(engine.model, engine.tokenizer, name="pooled")
    settings = ServerSettings(request_timeout_s=0.3, max_tokens=100_000)
    app = create_app({"pooled": pooled}, settings)
    with TestClient(app) as c:
        body = {"prompt": "x", "max_tokens": 50_000, "min_new_tokens": 50_000}
        late = c.post("/v1/completions", json=body)
        assert late.status_code == 504
        runner = app.state.musegpt.models.get("pooled").runner
        assert isinstance(runner, PoolRunner)
        for _ in range(100):  # the engine comes back to the pool within a step or two
            if runner._free.qsize() == 1:
                break
            threading.Event().wait(0.05)
        assert runner._free.qsize() == 1  # not after 50,000 tokens


def test_chat_templates_render_with_the_generation_prompt() -> None:
    from musegpt.server.chat import _render_template

    template = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    text = _render_template(template, [("system", "Be brief."), ("user", "Hi")])
    assert text == "<system>Be brief.</system><user>Hi</user><assistant>"


def test_client_disconnect_stops_generation(engine: Engine) -> None:
    import httpx
    from test_server_helpers import running_server

    app = create_app({"tiny": engine}, ServerSettings(max_tokens=100_000))
    body = {"prompt": "x", "max_tokens": 50_000, "min_new_tokens": 50_000, "stream": True}
    with running_server(app) as url:
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as response:
            next(response.iter_lines())  # the stream is running; now hang up
        runner = app.state.musegpt.models.get("tiny").runner
        for _ in range(200):
            if runner.scheduler.active == 0:
                break
            threading.Event().wait(0.05)
        assert runner.scheduler.active == 0
