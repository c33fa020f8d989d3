"""The remote engine: a model on another server, reached through the OpenAI completions API
(vLLM, llama.cpp's servers, another `musegpt serve`), registered with
`musegpt models add NAME --url http://host:8000/v1 --remote-model ID [--api-key-env VAR]`.

A remote server sends text, not next-token distributions, so what MuseGPT's decoder does
between tokens cannot be done here. Per feature (docs/scaling.md has the table):

- sent to the remote: the prompt, `max_new_tokens`, temperature, top-p/top-k/min-p,
  repetition/presence/frequency penalties, stop strings, seed, `logit_bias` (the remote
  model's token ids), logprobs; any other non-default `SamplingParams` field is passed
  under its own name (llama.cpp's `llama-server` and `musegpt serve` know them; others
  may ignore them);
- done here: `n` and several prompts (one request per sample; sample s of a seeded request
  uses seed + s, as local engines do), `echo`, stop strings again (a server that leaks a
  stop string's start never shows it), cancelling;
- banned phrases and patterns: generate-and-check, at most `BANNED_ATTEMPTS` attempts
  (attempt k uses seed + k); such a request is streamed once its text has passed;
- constraints (poetic forms, the ABC music grammar) need the distribution at each step:
  refused with a message saying so (the studio's poems fall back to generate-and-check).

Every wait is bounded: connecting (`CONNECT_TIMEOUT_S`), the silence between two pieces of
a stream (`timeout_s`), and retries (`RETRIES`, only before any text arrived).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import httpx

from musegpt.engines.base import BackendTokenizer, Engine, EngineError, EngineInfo
from musegpt.fileio import atomic_write_text
from musegpt.generation.decoder import (
    Completion,
    Delta,
    FinishReason,
    LogitsSource,
    TokenLogprob,
    TopLogprob,
)
from musegpt.generation.params import MAX_SEED, SamplingParams
from musegpt.generation.processors import LogitsProcessor
from musegpt.paths import config_dir

CONNECT_TIMEOUT_S = 5.0
DEFAULT_TIMEOUT_S = 120.0  # the longest silence allowed between two pieces of an answer
RETRIES = 2  # more tries after a refused connection or a 429/502/503/504, before any text
RETRY_PAUSE_S = 0.5  # doubled each retry
BANNED_ATTEMPTS = 4
REMOTE_VOCAB = 2**31  # a remote's own ids are checked by the remote, not here
FALLBACK_CONTEXT = 2048  # when the remote does not say (llama_cpp.server's default n_ctx)
NEEDS_DISTRIBUTION = (
    "it needs the model's next-token probabilities at each step, which an OpenAI "
    "completions server does not send"
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Sent on every request: llama.cpp's servers otherwise sample with top_k 40, min_p 0.05 and
# a repeat penalty of 1.1, which MuseGPT's defaults leave off.
ALWAYS_SENT = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty")
# Handled here or under other names, never passed through by their own names.
NOT_PASSED = {
    *ALWAYS_SENT,
    "max_new_tokens",
    "repetition_penalty",
    "stop",
    "seed",
    "logit_bias",
    "logprobs",
    "n",
    "echo",
    "banned",
    "banned_regex",
    "max_copy",
}
# Fields a remote cannot honour at all, and why (each only where SamplingParams has it).
REFUSED = {"max_copy": "it checks each next token against the local model's training corpus"}


class RemoteError(EngineError):
    """The remote server is unreachable, refused the request, or answered badly."""

    status: ClassVar[int] = 502  # what a server in front of the remote answers: bad gateway


class RemoteUnsupported(RemoteError):
    """A request a remote model cannot honour: it needs next-token probabilities."""

    status: ClassVar[int] = 400


class RemoteAnswerError(RemoteError):
    """The remote answered, but with an error status or an answer of the wrong shape."""


# -- the registry of remote models (remote_models.json beside models.json) -----------------


@dataclass(frozen=True)
class RemoteSpec:
    url: str  # the API's base, ending in /v1 as a rule
    model: str  # the model's id on the remote
    api_key_env: str | None = None  # the environment variable holding the API key
    context_length: int | None = None  # when the remote does not report it


def remote_registry_file() -> Path:
    return config_dir() / "remote_models.json"


def remote_models() -> dict[str, RemoteSpec]:
    file = remote_registry_file()
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return {str(k): RemoteSpec(**v) for k, v in data.get("remote", {}).items()}
    except (OSError, ValueError, TypeError) as err:
        raise EngineError(
            f"the remote model registry {file} is unreadable ({err}); fix or delete it"
        ) from None


def _save_remote_models(models: dict[str, RemoteSpec]) -> None:
    data = {"remote": {k: asdict(v) for k, v in sorted(models.items())}}
    atomic_write_text(remote_registry_file(), json.dumps(data, indent=2) + "\n")


def check_url(url: str) -> str:
    """`url` without a trailing slash, or a clear error saying what a URL should be."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as err:
        raise EngineError(f"{url!r} is not a URL ({err})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise EngineError(
            f"{url!r} is not an http(s) URL with a host; give the API's base, "
            "e.g. http://host:8000/v1"
        )
    return str(parsed).rstrip("/")


def add_remote(
    name: str,
    url: str,
    model: str,
    api_key_env: str | None = None,
    context_length: int | None = None,
) -> RemoteSpec:
    """Store a remote model under `name` (checked, not contacted: it may be down now);
    `musegpt.engines.registry.add_remote_model` checks the name first."""
    if not model.strip():
        raise EngineError("--remote-model is empty: give the model's id on the remote")
    if api_key_env is not None and not ENV_NAME.match(api_key_env):
        raise EngineError(
            f"--api-key-env {api_key_env!r} is not an environment variable name "
            "(letters, digits and '_'; give the variable's name, not the key)"
        )
    if context_length is not None and context_length < 2:
        raise EngineError(f"--context-length must be at least 2 (got {context_length})")
    spec = RemoteSpec(check_url(url), model.strip(), api_key_env, context_length)
    models = remote_models()
    models[name] = spec
    _save_remote_models(models)
    return spec


def remove_remote(name: str) -> bool:
    """Forget a remote model; False when no remote model has that name."""
    models = remote_models()
    if name not in models:
        return False
    del models[name]
    _save_remote_models(models)
    return True


# -- HTTP ------------------------------------------------------------------------------------


class RemoteClient:
    """JSON requests and server-sent-event streams to one remote, with bounded waits and
    retries, and errors that say which server failed and how."""

    def __init__(self, spec: RemoteSpec, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.spec = spec
        headers = {"Accept": "application/json"}
        if spec.api_key_env is not None:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise RemoteError(
                    f"the environment variable {spec.api_key_env} (the API key for "
                    f"{spec.url}) is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S)
        self.http = httpx.Client(timeout=timeout, headers=headers)
        # The server's root, where vLLM's and llama.cpp's tokenizer routes live.
        self.root = re.sub(r"/v1$", "", spec.url)

    def close(self) -> None:
        self.http.close()

    def get_json(self, path: str) -> Any:
        with self._send("GET", path, None) as response:
            return self._json(self._read(response, path), path)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        with self._send("POST", path, body) as response:
            return self._json(self._read(response, path), path)

    def stream_events(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The JSON events of a server-sent-event stream, until `[DONE]` or its end."""
        with self._send("POST", path, body) as response:
            try:
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank lines, comments, event names
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    event = self._json(data, path)
                    if not isinstance(event, dict):
                        raise self.bad_answer(
                            path, f"a stream event that is not an object: {data:.80}"
                        )
                    if "error" in event:
                        raise RemoteError(
                            f"{self._where(path)} failed mid-stream: {_message(event)}"
                        )
                    yield event
            except httpx.TransportError as err:
                raise self._broke_off(path, err) from None

    def _read(self, response: httpx.Response, path: str) -> str:
        try:
            response.read()
        except httpx.TransportError as err:
            raise self._broke_off(path, err) from None
        return response.text

    def _broke_off(self, path: str, err: httpx.TransportError) -> RemoteError:
        if isinstance(err, httpx.TimeoutException):
            return RemoteError(
                f"{self._where(path)} went silent for over {self.http.timeout.read:g} s "
                "in the middle of an answer"
            )
        return RemoteError(f"{self._where(path)} broke off its answer: {err}")

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> closing[httpx.Response]:
        base = self.root if path.startswith("/") else self.spec.url + "/"
        url = base + path
        pause = RETRY_PAUSE_S
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                request = self.http.build_request(method, url, json=body)
                response = self.http.send(request, stream=True)
            except httpx.ConnectTimeout:
                raise RemoteError(
                    f"{self._where(path)} did not accept a connection within "
                    f"{CONNECT_TIMEOUT_S:.0f} s; is the server up and the URL right?"
                ) from None
            except (httpx.ConnectError, httpx.RemoteProtocolError) as err:
                if last:
                    raise RemoteError(
                        f"{self._where(path)} is unreachable ({err}) after {RETRIES + 1} "
                        "tries; is the server up and the URL right?"
                    ) from None
                time.sleep(pause)
                pause *= 2
                continue
            except httpx.TimeoutException:
                raise RemoteError(
                    f"{self._where(path)} did not answer within {self.http.timeout.read:g} s"
                ) from None
            if response.status_code in (429, 502, 503, 504) and not last:
                response.close()
                time.sleep(pause)
                pause *= 2
                continue
            if response.status_code >= 400:
                with closing(response):
                    text = self._read(response, path)
                raise RemoteAnswerError(
                    f"{self._where(path)} answered {response.status_code}: "
                    f"{_message(_maybe_json(text))}"
                )
            return closing(response)
        raise AssertionError("unreachable: the last try returns or raises")

    def _json(self, text: str, path: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise self.bad_answer(path, f"malformed JSON: {text.strip()[:80]!r}") from None

    def _where(self, path: str) -> str:
        return f"the remote model server at {self.spec.url}" + (
            f" ({path})" if path.startswith("/") else ""
        )

    def bad_answer(self, path: str, what: str) -> RemoteError:
        return RemoteAnswerError(
            f"{self._where(path)} answered with {what}; is it an OpenAI-compatible server?"
        )


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _message(answer: Any) -> str:
    """The error message in an OpenAI-, FastAPI- or llama.cpp-shaped error answer."""
    if isinstance(answer, dict):
        error = answer.get("error", answer.get("detail", answer))
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:500]
        return str(error)[:500]
    return str(answer).strip()[:500] or "(no message)"


# -- the tokenizer -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _TokenizerRoute:
    tokenize: str
    detokenize: str
    text_field: str  # what the text is sent as
    text_back: str  # what the detokenized text comes back as


# vLLM's and musegpt serve's, llama_cpp.server's, llama.cpp's llama-server's.
TOKENIZER_ROUTES = (
    _TokenizerRoute("/tokenize", "/detokenize", "prompt", "prompt"),
    _TokenizerRoute("/extras/tokenize", "/extras/detokenize", "input", "text"),
    _TokenizerRoute("/tokenize", "/detokenize", "content", "content"),
)


class RemoteTokenizer(BackendTokenizer):
    """The remote model's tokenizer, through the server's tokenize routes where it has them
    (counts and ids are then the remote's own). Without them the ids are UTF-8 bytes: counts
    overestimate (about 4 bytes a token in English), which errs on the safe side for
    context budgets. Token pieces are never known here, so constraints cannot be built: its
    `vocab_size` is the byte table's, so code that scans a vocabulary ends at once."""

    kind: ClassVar[str] = "remote"

    def __init__(self, client: RemoteClient, context: str) -> None:
        super().__init__(vocab_size=257, eot_id=256, source=client.spec.url)
        self.client = client
        self.context = context  # "the remote engine NAME", for error messages
        self.route: _TokenizerRoute | None = None
        self.prefix: list[int] = []
        self.probed = False
        self._lock = threading.Lock()

    @property
    def exact(self) -> bool:
        """Whether ids and counts are the remote model's own."""
        self._probe()
        return self.route is not None

    def encode(self, text: str) -> list[int]:
        self._probe()
        if self.route is None:
            return list(text.encode("utf-8"))
        ids = self._tokenize(self.route, text)
        n = len(self.prefix)
        return ids[n:] if n and ids[:n] == self.prefix else ids

    def decode(self, ids: Sequence[int]) -> str:
        self._probe()
        if self.route is None:
            return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")
        body = {"model": self.client.spec.model, "tokens": list(ids)}
        answer = self.client.post_json(self.route.detokenize, body)
        text = answer.get(self.route.text_back) if isinstance(answer, dict) else None
        if not isinstance(text, str):
            raise self.client.bad_answer(self.route.detokenize, f"no text in {answer!s:.80}")
        return text

    def token_bytes(self, token_id: int) -> bytes:
        raise RemoteUnsupported(
            f"{self.context} cannot constrain its decoding (poetic forms, the music "
            f"grammar): {NEEDS_DISTRIBUTION}. Use a local model for this"
        )

    def _probe(self) -> None:
        """Find which tokenize route the server has, once (a server that cannot be reached
        is asked again next time), and what it adds to every text (a BOS token)."""
        with self._lock:
            if self.probed:
                return
            for route in TOKENIZER_ROUTES:
                try:
                    # A server that ignores the field it was sent gives no tokens for text.
                    if not self._tokenize(route, "probe"):
                        continue
                    self.prefix = self._tokenize(route, "")
                except RemoteAnswerError:
                    continue  # not this server's route
                self.route = route
                break
            self.probed = True

    def _tokenize(self, route: _TokenizerRoute, text: str) -> list[int]:
        body = {"model": self.client.spec.model, route.text_field: text}
        answer = self.client.post_json(route.tokenize, body)
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise self.client.bad_answer(route.tokenize, f"no token ids in {answer!s:.80}")
        return tokens


# -- the engine --------------------------------------------------------------------------------


class RemoteEngine(Engine):
    """A model on another server; see the module's docstring for what is honoured how."""

    backend: ClassVar[str] = "remote"
    max_batch: ClassVar[int | None] = 1  # one request per prompt and sample

    def __init__(self, name: str, spec: RemoteSpec, timeout_s: float = DEFAULT_TIMEOUT_S):
        super().__init__(name, spec.url)
        self.spec = spec
        self.client = RemoteClient(spec, timeout_s)
        self._tokenizer = RemoteTokenizer(self.client, f"the remote engine {name!r}")
        self._context = spec.context_length or FALLBACK_CONTEXT

    def copy_index(self, params: SamplingParams) -> None:
        """None: `max_copy` is refused with its reason when the request runs (REFUSED)."""
        return None

    @classmethod
    def load(
        cls, name: str, spec: RemoteSpec, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> RemoteEngine:
        """Connect and check that the remote offers the model (a clear error if not)."""
        engine = cls(name, spec, timeout_s)
        try:
            engine._check_model()
        except BaseException:
            engine.close()
            raise
        return engine

    def close(self) -> None:
        self.client.close()

    def _check_model(self) -> None:
        answer = self.client.get_json("models")
        models = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise self.client.bad_answer(
                "models", f"a model list of the wrong shape: {answer!s:.80}"
            )
        ids = [str(m.get("id")) for m in models]
        if self.spec.model not in ids:
            raise RemoteError(
                f"the remote model server at {self.spec.url} offers no model "
                f"{self.spec.model!r}; it offers: {', '.join(ids) or 'none'}"
            )
        entry = models[ids.index(self.spec.model)]
        for value in (entry.get("context_length"), entry.get("max_model_len")):
            if self.spec.context_length is None and isinstance(value, int) and value > 1:
                self._context = value
                break

    @property
    def tokenizer(self) -> RemoteTokenizer:
        return self._tokenizer

    @property
    def info(self) -> EngineInfo:
        # The remote checks its own token ids (logit_bias): no bound is known here.
        exact = self.tokenizer.exact
        return replace(super().info, vocab_size=REMOTE_VOCAB if exact else 257)

    @property
    def context_length(self) -> int:
        return self._context

    def logits_source(self, params: SamplingParams | None = None) -> LogitsSource:
        raise RemoteUnsupported(
            f"the remote engine {self.name!r} cannot give logits: {NEEDS_DISTRIBUTION}"
        )

    def decode_deltas(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams,
        constraints: Sequence[LogitsProcessor],
        cancel: threading.Event | None,
        completions: list[Completion],
    ) -> Iterator[Delta]:
        if constraints:
            names = ", ".join(sorted({type(c).__name__ for c in constraints}))
            raise RemoteUnsupported(
                f"the remote engine {self.name!r} cannot apply constraints ({names}): "
                f"{NEEDS_DISTRIBUTION}. Use a local model, or write without them "
                "(musegpt compose --unconstrained)"
            )
        defaults = SamplingParams()
        for field, why in REFUSED.items():
            if getattr(params, field, None) != getattr(defaults, field, None):
                raise RemoteUnsupported(
                    f"the remote engine {self.name!r} cannot honour {field}: {why}, and "
                    f"{NEEDS_DISTRIBUTION}"
                )
        done: list[Completion] = []
        for batch in self._batches(prompts, params):
            prompt = batch.prompts[0]
            index = batch.index_of(0)
            completion = yield from self._one(prompt, batch.params, index, cancel)
            completion.prompt_index = batch.first_prompt
            done.append(completion)
            if cancel is not None and cancel.is_set():
                break
        completions.extend(sorted(done, key=lambda c: c.index))

    def _one(
        self, prompt: str, params: SamplingParams, index: int, cancel: threading.Event | None
    ) -> Generator[Delta, None, Completion]:
        """One sample: streamed as it comes, or (banned phrases) once it passed the check."""
        checked = bool(params.banned or params.banned_regex)
        attempts = 1 if not checked or params.greedy else BANNED_ATTEMPTS
        if params.echo:
            yield Delta(index, prompt)
        for attempt in range(attempts):
            seed = None if params.seed is None else (params.seed + attempt) % (MAX_SEED + 1)
            held = _StopHolder(params.stop)
            text, logprobs = "", list[TokenLogprob]()
            reason: FinishReason = "stop"
            # Closing the stream early (a stop string, a cancel) ends the remote's decode too.
            with closing(self._stream(prompt, params, seed, cancel)) as pieces:
                for piece, piece_logprobs, finish in pieces:
                    logprobs.extend(piece_logprobs)
                    released, stopped = held.push(piece)
                    text += released
                    if released and not checked:
                        yield Delta(index, released, logprobs=piece_logprobs or None)
                    if finish is not None or stopped:
                        reason = "stop" if stopped or finish is None else finish
                        break
            if not held.stopped:
                rest = held.flush()
                text += rest
                if rest and not checked:
                    yield Delta(index, rest)
            banned_at = _first_banned(text, params) if checked else None
            if banned_at is None:
                break
        message = None
        if checked and banned_at is not None:
            text, reason = text[:banned_at], "no_allowed_token"
            same = "greedy decoding writes the same text each time; " if params.greedy else ""
            message = (
                f"each of the {attempts} text(s) the remote wrote held a banned phrase or "
                f"pattern ({same}checking the text is all a remote allows: {NEEDS_DISTRIBUTION}); "
                "the text ends before it"
            )
        if checked and text:
            yield Delta(index, text)
        yield Delta(index, "", finish_reason=reason, finish_message=message)
        shown = prompt + text if params.echo else text
        ids = self.tokenizer.encode(text) if text else []
        return Completion(
            index, 0, shown, ids, reason, len(self.tokenizer.encode(prompt)),
            logprobs=logprobs if params.logprobs is not None else None,
            finish_message=message,
        )  # fmt: skip

    def _stream(
        self,
        prompt: str,
        params: SamplingParams,
        seed: int | None,
        cancel: threading.Event | None,
    ) -> Generator[tuple[str, list[TokenLogprob], FinishReason | None], None, None]:
        """(text, its tokens' log-probabilities, finish reason or None) as they arrive."""
        body = request_body(self.spec.model, prompt, params, seed)
        offset = 0
        for event in self.client.stream_events("completions", body):
            if cancel is not None and cancel.is_set():
                yield "", [], "cancelled"
                return
            choices = event.get("choices")
            if not isinstance(choices, list):
                raise self.client.bad_answer(
                    "completions", f"an event without choices: {event!s:.80}"
                )
            for choice in choices:
                text = choice.get("text") if isinstance(choice, dict) else None
                if not isinstance(text, str):
                    raise self.client.bad_answer(
                        "completions", f"a choice without text: {choice!s:.80}"
                    )
                logprobs = _logprobs(choice.get("logprobs"), offset)
                offset += sum(len(t.token) for t in logprobs)
                yield text, logprobs, _finish(choice.get("finish_reason"))
        yield "", [], "stop"  # a stream that ended without a reason ended all the same


def request_body(
    model: str, prompt: str, params: SamplingParams, seed: int | None
) -> dict[str, Any]:
    """The completions request for one sample of `prompt` (see the module's docstring)."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "max_tokens": params.max_new_tokens,
        "stream": True,
        # Both names: llama.cpp's servers read the first, vLLM the second.
        "repeat_penalty": params.repetition_penalty,
        "repetition_penalty": params.repetition_penalty,
    }
    for name in ALWAYS_SENT:
        body[name] = getattr(params, name)
    if params.stop:
        body["stop"] = params.stop
    if seed is not None:
        body["seed"] = seed
    if params.logit_bias:
        body["logit_bias"] = {str(k): v for k, v in params.logit_bias.items()}
    if params.logprobs is not None:
        body["logprobs"] = params.logprobs
    defaults = SamplingParams()
    for name in SamplingParams.model_fields:
        value = getattr(params, name)
        if name not in NOT_PASSED and value != getattr(defaults, name):
            body[name] = value
    return body


class _StopHolder:
    """Releases streamed text but holds back what could be the start of a stop string, and
    cuts the text before the first stop string (servers differ in how exactly they stop)."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = list(stops)
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.stopped = False

    def push(self, piece: str) -> tuple[str, bool]:
        """(text safe to show now, whether a stop string was reached)."""
        self.pending += piece
        cuts = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.stopped = True
            out, self.pending = self.pending[: min(cuts)], ""
            return out, True
        keep = len(self.pending) - self.hold
        out, self.pending = self.pending[: max(keep, 0)], self.pending[max(keep, 0) :]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def _first_banned(text: str, params: SamplingParams) -> int | None:
    """Where the first banned phrase or pattern starts in `text`, or None."""
    starts = [i for i in (text.find(p) for p in params.banned) if i >= 0]
    for pattern in params.banned_regex:
        match = re.search(pattern, text)
        if match is not None:
            starts.append(match.start())
    return min(starts, default=None)


def _finish(reason: Any) -> FinishReason | None:
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"


def _logprobs(data: Any, offset: int) -> list[TokenLogprob]:
    """The OpenAI completions log-probabilities of a piece, offsets counted from `offset`
    (token ids are the remote's and not sent, so they are -1)."""
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
        return []
    tokens = data["tokens"]
    values = data.get("token_logprobs") or [None] * len(tokens)
    tops = data.get("top_logprobs") or [None] * len(tokens)
    out = []
    for token, value, top in zip(tokens, values, tops, strict=False):
        alternatives = [
            TopLogprob(str(t), -1, float(v), str(t).encode("utf-8"))
            for t, v in sorted((top or {}).items(), key=lambda kv: -float(kv[1]))
        ]
        out.append(
            TokenLogprob(
                str(token),
                -1,
                float(value if value is not None else 0.0),
                alternatives,
                str(token).encode("utf-8"),
                offset,
            )
        )
        offset += len(str(token))
    return out
