"""The server against hostile or careless clients: metrics flooding and forging, CORS with
keys, oversized chunked bodies, crashes on a kept-alive connection, clients that hang up,
and SIGTERM while a request runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from test_server_helpers import running_server, tiny_engine

from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.model.io import save_model
from musegpt.server import ServerSettings, create_app
from musegpt.server.hosts import in_thread

LONG = {"prompt": "x", "max_tokens": 50_000, "min_new_tokens": 50_000}


@pytest.fixture(scope="module")
def engine() -> MuseGPTEngine:
    return tiny_engine()


def _wait_until(condition: object, tries: int = 400) -> bool:
    """Poll `condition()` (bounded: about 20 s at most); whether it came true."""
    for _ in range(tries):
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_metrics_cannot_be_flooded_or_forged(engine: MuseGPTEngine) -> None:
    with TestClient(create_app({"tiny": engine})) as client:
        client.get("/v1/unknown-0")
        client.get("/v1/documents/1")  # a real route: labelled by its template
        client.get("/metrics")  # so that /metrics itself has its label before the count
        before = client.get("/metrics").text
        for i in range(1, 600):
            client.get(f"/v1/unknown-{i}")
        # decoded, the path is: /v1/x"} 1<newline>musegpt_forged_total{route="y"} 99<newline>#
        forged = "/v1/x%22%7D%201%0Amusegpt_forged_total%7Broute=%22y%22%7D%2099%0A%23"
        assert client.get(forged).status_code == 404
        after = client.get("/metrics").text
    assert len(after.splitlines()) == len(before.splitlines())  # one label for all 600
    assert 'route="unmatched",status="404"} 601.0' in after
    assert 'route="/v1/documents/{document_id}"' in after
    assert "musegpt_forged" not in after and "unknown-" not in after


def test_cors_preflight_is_answered_before_the_key_check(engine: MuseGPTEngine) -> None:
    origin = "http://studio.example"
    settings = ServerSettings(api_keys=("s3cret",), cors_origins=(origin,))
    with TestClient(create_app({"tiny": engine}, settings)) as client:
        preflight = client.options(
            "/v1/completions",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        # The real request still needs the key; its 401 is readable from that origin.
        refused = client.post("/v1/completions", json={"prompt": "x"}, headers={"Origin": origin})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == origin
        allowed = client.post(
            "/v1/completions",
            json={"prompt": "x", "max_tokens": 2},
            headers={"Origin": origin, "Authorization": "Bearer s3cret"},
        )
        assert allowed.status_code == 200


def test_chunked_body_over_the_limit_is_413(engine: MuseGPTEngine) -> None:
    app = create_app({"tiny": engine}, ServerSettings(max_body_bytes=2000))

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"prompt": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    with running_server(app) as url:
        response = httpx.post(
            f"{url}/v1/completions",
            content=chunks(),
            headers={"content-type": "application/json"},
            timeout=30,
        )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_500_leaves_the_kept_alive_connection_usable(engine: MuseGPTEngine) -> None:
    app = create_app({"tiny": engine})

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/test-broken", broken)  # only in this test's app
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        crashed = client.get("/v1/test-broken")
        assert crashed.status_code == 500
        assert crashed.json()["error"]["message"] == "internal error: RuntimeError: a bug"
        first = crashed.extensions["network_stream"].get_extra_info("client_addr")
        after = client.get("/health")
        assert after.status_code == 200
        assert after.extensions["network_stream"].get_extra_info("client_addr") == first


def _hang_up_during(url: str, path: str, body: bytes, running: object) -> None:
    """Send a request on a raw socket, wait until `running()`, then close the socket."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        assert _wait_until(running), "the request never started"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", b'{"prompt": "x", "max_tokens": 50000, "min_new_tokens": 50000}'),
        (
            "/v1/chat/completions",
            b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 50000,'
            b' "min_new_tokens": 50000}',
        ),
    ],
)
def test_a_whole_answer_stops_decoding_when_its_client_hangs_up(
    engine: MuseGPTEngine, path: str, body: bytes
) -> None:
    app = create_app({"tiny": engine}, ServerSettings(max_tokens=100_000))
    with running_server(app) as url:
        scheduler = app.state.musegpt.models.get("tiny").runner.scheduler
        _hang_up_during(url, path, body, lambda: scheduler.active == 1)
        assert _wait_until(lambda: scheduler.active == 0)  # within a step, not 50,000
        metrics = httpx.get(f"{url}/metrics").text
    assert f'musegpt_requests_total{{route="{path}",status="499"}} 1.0' in metrics


def test_any_request_is_cancelled_when_its_client_hangs_up(engine: MuseGPTEngine) -> None:
    """Every handler (studio, music, completions) runs its work through `in_thread`; the
    work's cancel event is set when the client goes."""
    app = create_app({"tiny": engine})
    cancel, started = threading.Event(), threading.Event()

    async def waits_for_cancel(body: dict[str, int]) -> None:
        def work() -> None:
            started.set()
            cancel.wait(30)

        await in_thread(work, cancel, time.monotonic() + 60)

    app.add_api_route("/v1/test-work", waits_for_cancel, methods=["POST"])  # this app only
    with running_server(app) as url:
        _hang_up_during(url, "/v1/test-work", b"{}", started.is_set)
        assert cancel.wait(20)


def test_serve_stops_soon_after_sigterm_with_a_request_running(
    engine: MuseGPTEngine, tmp_path: Path
) -> None:
    model = save_model(tmp_path / "tiny", engine.model, engine.tokenizer)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    command = [
        sys.executable, "-m", "musegpt.cli.app", "serve", "--model", str(model.parent),
        "--no-music", "--port", str(port), "--max-tokens", "100000",
        "--works", str(tmp_path / "works.db"),
    ]  # fmt: skip
    server = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return bool(httpx.get(f"{url}/health").json()["models"]["tiny"] == "ready")
            except httpx.HTTPError:
                return False

        assert _wait_until(ready, tries=1200), "the server never came up"
        answers: list[int | str] = []

        def ask() -> None:
            try:
                answers.append(
                    httpx.post(f"{url}/v1/completions", json=LONG, timeout=60).status_code
                )
            except httpx.HTTPError as err:  # the server may close the connection instead
                answers.append(type(err).__name__)

        client = threading.Thread(target=ask, daemon=True)
        client.start()

        def decoding() -> bool:
            return 'musegpt_running_requests{model="tiny"} 1.0' in httpx.get(f"{url}/metrics").text

        assert _wait_until(decoding)
        server.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down cleanly
        assert server.wait(timeout=10) in (0, -signal.SIGTERM)  # not after 50,000 tokens
        client.join(10)
        assert answers == [503]  # cancelled, and told so
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_favicon_is_served(engine: MuseGPTEngine) -> None:
    with TestClient(create_app({"tiny": engine})) as client:
        icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.content.startswith(b"<svg")
