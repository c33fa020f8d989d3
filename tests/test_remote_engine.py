"""The remote engine against real OpenAI-compatible servers started here: llama-cpp-python's
own server (`python -m llama_cpp.server`) with the default GGUF, another `musegpt serve`
with a packaged model, and a deliberately bad server for down, silent and malformed cases."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from musegpt.cli.app import app as cli
from musegpt.engines.base import Engine
from musegpt.engines.registry import list_models, open_engine, remove_model
from musegpt.engines.remote import RemoteEngine, RemoteError, RemoteSpec
from musegpt.forms import check, get_form
from musegpt.forms.constraints import form_constraints
from musegpt.generation.processors import DecodeState
from musegpt.music.compose import compose
from musegpt.server.app import create_app
from musegpt.studio import Studio
from musegpt.studio.poem import PoemError

START_TIMEOUT_S = 120.0
PROMPT = "Once upon a time"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    command: list[str], port: int, ready: Callable[[dict], bool], key: str = ""
) -> subprocess.Popen:
    """Start a server process and wait (bounded) until its /v1/models says it is ready."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"remote-test-{port}.log"
    with log.open("wb") as out:  # the server keeps its own copy of the file
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=headers, timeout=2)
            if answer.status_code == 200 and ready(answer.json()):
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(process)
    pytest.fail(f"server on port {port} not ready within {START_TIMEOUT_S} s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def llama_url() -> Iterator[str]:
    pytest.importorskip("sse_starlette", reason="llama-cpp-python[server] is not installed")
    pytest.importorskip("starlette_context", reason="llama-cpp-python[server] is not installed")
    from musegpt.engines.default_model import default_model_path

    port = free_port()
    # llama.cpp's server loaded with MuseGPT's own defaults (on a CPU with AMX, weights in
    # plain buffers: see `loading_defaults`), so it runs where the local engine runs.
    server = (
        "import runpy; from musegpt.engines.llama import loading_defaults\n"
        "with loading_defaults(): runpy.run_module('llama_cpp.server', run_name='__main__')"
    )
    command = [
        sys.executable, "-c", server, "--model", str(default_model_path()),
        "--model_alias", "gemma", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1",
    ]  # fmt: skip
    process = start_server(command, port, lambda models: bool(models.get("data")))
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def llama_remote(llama_url: str) -> Iterator[RemoteEngine]:
    engine = RemoteEngine.load("gemma-remote", RemoteSpec(llama_url, "gemma"))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def musegpt_url() -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable, "-c", "from musegpt.cli.app import main; main()", "serve",
        "--model", "poetry", "--no-music", "--port", str(port), "--api-key", "sesame",
    ]  # fmt: skip
    process = start_server(command, port, lambda m: all_ready(m.get("data", [])), "sesame")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_server(process)


def all_ready(models: list[dict]) -> bool:
    return bool(models) and all(m.get("ready") for m in models)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MUSEGPT_CONFIG", str(tmp_path))
    return tmp_path


# -- llama.cpp's server ---------------------------------------------------------------------


def test_stream_is_what_the_server_writes(llama_remote: RemoteEngine, llama_url: str) -> None:
    pieces = list(llama_remote.stream(PROMPT, max_new_tokens=8, temperature=0))
    direct = httpx.post(
        f"{llama_url}/completions",
        # llama.cpp's server would otherwise add its own repeat penalty (1.1)
        json={
            "model": "gemma",
            "prompt": PROMPT,
            "max_tokens": 8,
            "temperature": 0,
            "repeat_penalty": 1.0,
        },
        timeout=60,
    ).json()["choices"][0]["text"]
    assert len(pieces) > 1  # streamed, not one lump
    assert "".join(pieces) == direct
    completion = llama_remote.complete(PROMPT, max_new_tokens=8, temperature=0)[0]
    assert completion.text == direct and completion.finish_reason == "length"


def test_tokens_are_the_remote_models_own(llama_remote: RemoteEngine, gemma: Engine) -> None:
    assert llama_remote.tokenizer.exact
    text = "The lighthouse keeper's daughter — 灯塔"
    ids = llama_remote.tokenize(text)  # the text's own tokens, without the BOS token
    assert gemma.tokenize("") + ids == gemma.tokenize(text)
    assert llama_remote.detokenize(ids) == text


def test_stop_strings_n_and_echo(llama_remote: RemoteEngine) -> None:
    done = llama_remote.complete(PROMPT, max_new_tokens=12, temperature=0, stop=[" was"])[0]
    assert " was" not in done.text and done.finish_reason == "stop"
    # Same seed, same text is tested against musegpt serve below: llama.cpp's server reuses
    # its cache, which can shift its numbers (see test_a_studio_and_a_server_...).
    first = llama_remote.complete(["A", "The"], max_new_tokens=4, temperature=1.0, n=2, seed=9)
    assert [(c.index, c.prompt_index) for c in first] == [(0, 0), (1, 0), (2, 1), (3, 1)]
    assert len({c.text for c in first}) > 1
    echoed = llama_remote.complete(PROMPT, max_new_tokens=4, temperature=0, echo=True)[0]
    assert echoed.text.startswith(PROMPT) and len(echoed.text) > len(PROMPT)


def test_logprobs_come_through(llama_remote: RemoteEngine) -> None:
    done = llama_remote.complete(PROMPT, max_new_tokens=6, temperature=0, logprobs=3)[0]
    assert done.logprobs is not None and len(done.logprobs) == 6
    assert "".join(t.token for t in done.logprobs) == done.text
    for t in done.logprobs:
        assert t.top and t.top[0].logprob >= t.top[-1].logprob and t.logprob <= 0


def test_banned_phrases_are_generated_and_checked(llama_remote: RemoteEngine) -> None:
    greedy = llama_remote.generate(PROMPT, max_new_tokens=8, temperature=0)
    word = greedy.split()[1]
    done = llama_remote.complete(PROMPT, max_new_tokens=8, temperature=0, banned=[word])[0]
    assert word not in done.text and greedy.startswith(done.text)
    assert done.finish_reason == "no_allowed_token" and "banned" in (done.finish_message or "")
    sampled = llama_remote.complete(
        PROMPT, max_new_tokens=8, temperature=1.0, seed=1, banned=["the", "The"]
    )[0]
    assert "the" not in sampled.text.lower() or sampled.finish_reason == "no_allowed_token"


def test_per_token_features_are_refused(llama_remote: RemoteEngine) -> None:
    tok = llama_remote.tokenizer

    def no_op(state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        return scores

    with pytest.raises(RemoteError, match=r"cannot apply constraints.*next-token probabilities"):
        llama_remote.complete(PROMPT, constraints=[no_op])
    # Constraint builders scan the vocabulary first: they end at once, then are refused.
    with pytest.raises(RemoteError, match=r"cannot apply constraints \(AbcConstraint\)"):
        compose("a jig", bars=4, engine=llama_remote)
    with pytest.raises(RemoteError, match="cannot apply constraints"):
        llama_remote.complete(PROMPT, constraints=form_constraints(get_form("haiku"), tok))
    with pytest.raises(RemoteError, match="cannot give logits"):
        llama_remote.next_token_logits([1, 2, 3])
    with pytest.raises(RemoteError, match="cannot constrain its decoding"):
        llama_remote.tokenizer.token_bytes(5)


def test_a_studio_and_a_server_in_front_of_the_remote(llama_remote: RemoteEngine) -> None:
    work = Studio(llama_remote).describe("a lighthouse at night", max_new_tokens=16, seed=3)
    assert len(work.text.split()) > 3
    # llama.cpp's server reuses its cache, and its greedy text can shift with the prompt it
    # decoded just before (measured): the same prompt goes first, so every call sees one state.
    llama_remote.generate(PROMPT, max_new_tokens=8, temperature=0)
    with TestClient(create_app({"far": llama_remote})) as client:
        answer = client.post(
            "/v1/completions",
            # The remote's own token ids pass (Gemma has 262,144), as the remote checks them.
            json={
                "model": "far",
                "prompt": PROMPT,
                "max_tokens": 8,
                "temperature": 0,
                "logit_bias": {"250000": 0},
            },
        )
        assert answer.status_code == 200, answer.text
        text = answer.json()["choices"][0]["text"]
    assert text == llama_remote.generate(PROMPT, max_new_tokens=8, temperature=0)


def test_a_step_budget_caps_a_remote_call_in_tokens(llama_remote: RemoteEngine) -> None:
    """A remote model takes nothing back, so a chapter's step budget is its token cap."""
    writer = Studio(llama_remote).writer("a lighthouse", seed=3, temperature=0)
    writer.write(PROMPT, 40, most_steps=6, clean_end=False)
    assert 0 < writer.stepped <= 6
    writer.write(PROMPT, 40, clean_end=False)
    assert writer.stepped > 6  # …where the call alone would go on


def test_poems_on_a_remote_are_generated_and_checked(llama_remote: RemoteEngine) -> None:
    # No steering token by token: a passing poem, or the form checker's report (not an error
    # about constraints).
    try:
        poem = Studio(llama_remote).poem("the sea", "haiku", attempts=1, seed=2, max_new_tokens=40)
        assert check(poem.text, "haiku").passed
    except PoemError as failed:
        assert failed.report.reasons and not failed.report.passed


# -- another musegpt serve ------------------------------------------------------------------


def test_musegpt_serve_as_remote_writes_what_the_local_model_writes(
    musegpt_url: str, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESAME_KEY", "sesame")
    added = CliRunner().invoke(
        cli,
        ["models", "add", "far-poetry", "--url", musegpt_url + "/", "--remote-model", "poetry",
         "--api-key-env", "SESAME_KEY"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert any(m.name == "far-poetry" and m.backend == "remote" for m in list_models())
    remote, local = open_engine("far-poetry"), open_engine("poetry")
    assert remote.context_length == local.context_length  # from the server's /v1/models
    assert remote.tokenize("moonlight on the sea") == local.tokenize("moonlight on the sea")
    # Seeded sampling with top-k, and a MuseGPT-only sampler passed by its own name.
    params = {"temperature": 0.9, "seed": 4, "top_k": 20, "no_repeat_ngram_size": 2}
    want = local.generate("The moon", max_new_tokens=12, **params)
    assert "".join(remote.stream("The moon", max_new_tokens=12, **params)) == want
    assert remote.generate("The moon", max_new_tokens=12, temperature=0) == local.generate(
        "The moon", max_new_tokens=12, temperature=0
    )
    monkeypatch.setenv("SESAME_KEY", "wrong")
    with pytest.raises(RemoteError, match="answered 401"):
        open_engine("far-poetry")
    monkeypatch.delenv("SESAME_KEY")
    with pytest.raises(RemoteError, match=r"SESAME_KEY .* is not set"):
        open_engine("far-poetry")
    remove_model("far-poetry")
    assert all(m.name != "far-poetry" for m in list_models())


# -- down, silent and bad servers -----------------------------------------------------------


class BadServer:
    """A real HTTP server whose answer to each path the test sets: (status, body, pause
    before the body's second half). Counts the requests it got."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, str, float]] = {}
        self.hits: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def answer(self) -> None:
                path = self.path.split("?")[0]
                outer.hits[path] = outer.hits.get(path, 0) + 1
                status, body, pause = outer.answers.get(path, (404, '{"detail":"no"}', 0.0))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                half = len(data) // 2 if pause else len(data)
                self.wfile.write(data[:half])
                self.wfile.flush()
                time.sleep(pause)
                self.wfile.write(data[half:])

            def do_GET(self) -> None:
                self.answer()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.answer()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.answers["/v1/models"] = (200, json.dumps({"data": [{"id": "m"}]}), 0.0)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bad() -> Iterator[BadServer]:
    server = BadServer()
    yield server
    server.close()


def sse(*events: object) -> str:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def test_a_server_that_is_down_fails_quickly_and_clearly() -> None:
    spec = RemoteSpec(f"http://127.0.0.1:{free_port()}/v1", "m")
    with pytest.raises(RemoteError, match=r"unreachable .* after 3 tries; is the server up"):
        RemoteEngine.load("down", spec)


def test_bad_answers_are_named(bad: BadServer) -> None:
    bad.answers["/v1/models"] = (200, "{not json", 0.0)
    with pytest.raises(RemoteError, match="malformed JSON"):
        RemoteEngine.load("bad", RemoteSpec(bad.url, "m"))
    bad.answers["/v1/models"] = (200, json.dumps({"data": "m"}), 0.0)
    with pytest.raises(RemoteError, match="wrong shape"):
        RemoteEngine.load("bad", RemoteSpec(bad.url, "m"))
    bad.answers["/v1/models"] = (200, json.dumps({"data": [{"id": "other"}]}), 0.0)
    with pytest.raises(RemoteError, match="offers no model 'm'; it offers: other"):
        RemoteEngine.load("bad", RemoteSpec(bad.url, "m"))

    engine = RemoteEngine(
        "bad", RemoteSpec(bad.url, "m", context_length=512), timeout_s=1.0
    )  # the tokenize routes are missing (404): byte counts
    assert engine.tokenize("héllo") == list("héllo".encode())
    bad.answers["/v1/completions"] = (500, json.dumps({"error": {"message": "GPU on fire"}}), 0)
    with pytest.raises(RemoteError, match="answered 500: GPU on fire"):
        engine.generate("x")
    assert bad.hits["/v1/completions"] == 1  # a 500 is not retried
    bad.answers["/v1/completions"] = (503, "busy", 0.0)
    with pytest.raises(RemoteError, match="answered 503: busy"):
        engine.generate("x")
    assert bad.hits["/v1/completions"] == 1 + 3  # 503 retried, boundedly
    bad.answers["/v1/completions"] = (200, "data: {broken\n\n", 0.0)
    with pytest.raises(RemoteError, match="malformed JSON"):
        engine.generate("x")
    bad.answers["/v1/completions"] = (200, sse({"choices": [{"txt": "a"}]}), 0.0)
    with pytest.raises(RemoteError, match="a choice without text"):
        engine.generate("x")
    bad.answers["/v1/completions"] = (200, sse({"error": {"message": "out of memory"}}), 0.0)
    with pytest.raises(RemoteError, match="failed mid-stream: out of memory"):
        engine.generate("x")
    # A server in front of it answers 502 with the remote's reason, never a 500.
    with TestClient(create_app({"far": engine})) as client:
        for path, body in (
            ("/v1/completions", {"model": "far", "prompt": "x"}),
            ("/v1/studio/describe", {"model": "far", "text": "a lake"}),
        ):
            answer = client.post(path, json=body)
            assert answer.status_code == 502, answer.text
            assert "out of memory" in answer.json()["error"]["message"]
        # What a remote cannot do is the request's fault: 400, saying why.
        answer = client.post("/v1/completions", json={"model": "far", "prompt": "x", "max_copy": 8})
        assert answer.status_code == 400 and "cannot honour max_copy" in answer.text


def test_a_silent_server_times_out(bad: BadServer) -> None:
    engine = RemoteEngine("slow", RemoteSpec(bad.url, "m", context_length=512), timeout_s=0.5)
    events = sse(
        {"choices": [{"text": "Hel", "finish_reason": None}]},
        {"choices": [{"text": "lo.", "finish_reason": "stop"}]},
    )
    bad.answers["/v1/completions"] = (200, events, 0.0)
    assert engine.generate("x", stop=["."]) == "Hello"
    bad.answers["/v1/completions"] = (200, events, 3.0)  # goes quiet mid-answer
    with pytest.raises(RemoteError, match=r"went silent for over 0\.5 s"):
        engine.generate("x")
    bad.answers["/v1/models"] = (200, json.dumps({"data": [{"id": "m"}]}), 3.0)
    with pytest.raises(RemoteError, match=r"went silent for over 0\.5 s"):
        RemoteEngine.load("slow", RemoteSpec(bad.url, "m"), timeout_s=0.5)


def test_registration_is_checked(config: Path) -> None:
    runner = CliRunner()
    for args, message in (
        (["--url", "ftp://host/v1", "--remote-model", "m"], "not an http(s) URL"),
        (["--url", "http://host/v1"], "takes --url and --remote-model"),
        (["--url", "http://h/v1", "--remote-model", "m", "--api-key-env", "sk-1"], "not an env"),
    ):
        result = runner.invoke(cli, ["models", "add", "r", *args])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not any(m.backend == "remote" for m in list_models())
