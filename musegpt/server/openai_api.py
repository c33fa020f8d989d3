"""The OpenAI-compatible endpoints: models, completions (also the 0.x `engine=` route),
chat completions; answers and server-sent-event streams in OpenAI's format."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from musegpt.generation.decoder import Completion, Delta, FinishReason, TokenLogprob
from musegpt.generation.params import SamplingParams
from musegpt.server.chat import render_chat
from musegpt.server.errors import APIError, invalid
from musegpt.server.hosts import (
    Admission,
    ModelHost,
    event_stream,
    in_thread,
    run_emitting,
)
from musegpt.server.moderation_api import screen_completion, screen_prompt
from musegpt.server.schemas import (
    ChatRequest,
    CompletionRequest,
    check_vocabulary,
    sampling_params,
    too_long,
)
from musegpt.server.state import ServerState, state_of

router = APIRouter()


@router.get("/v1/models")
def list_models(request: Request) -> dict[str, Any]:
    """The text and music models served, then the image models the images API draws with;
    `kind` says which menu a client offers each in."""
    state = state_of(request)
    data = [_model_entry(state, host) for host in state.models.hosts.values()]
    data += [e for e in _image_entries(request, state) if e["id"] not in state.models.hosts]
    return {"object": "list", "data": data}


@router.get("/v1/models/{model}")
def get_model(model: str, request: Request) -> dict[str, Any]:
    state = state_of(request)
    if model not in state.models.hosts:
        image = next((e for e in _image_entries(request, state) if e["id"] == model), None)
        if image is not None:
            return image
    return _model_entry(state, state.models.get(model))


def _model_entry(state: ServerState, host: ModelHost) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": host.name,
        "object": "model",
        "created": state.started,
        "owned_by": "musegpt",
        "ready": host.runner is not None,
        "kind": host.kind,  # decided from the loaded model itself (model_kinds.py)
    }
    if host.runner is not None:
        info = host.runner.engine.info
        entry.update(backend=info.backend, context_length=info.context_length)
    return entry


def _image_entries(request: Request, state: ServerState) -> list[dict[str, Any]]:
    """The default image model (if this install has one) and any other loaded ones."""
    from musegpt.images.model import is_image_model
    from musegpt.server.images_api import image_models

    images = image_models(request)
    names = [*images.models]
    default = images.default
    # Not loaded yet: listed when its file's metadata says it is an image model (no weights
    # are read), so the listing costs nothing and never fails.
    if default not in images.models and default not in images.failed and is_image_model(default):
        names.insert(0, default)
    return [
        {
            "id": name,
            "object": "model",
            "created": state.started,
            "owned_by": "musegpt",
            # Ready to draw: an image model not loaded yet loads on its first drawing in
            # under a second, so a client waiting for every model to be ready need not wait.
            "ready": True,
            "loaded": name in images.models,
            "kind": "image",
            "backend": "musegpt",
        }
        for name in names
    ]


@router.post("/v1/completions", response_model=None)
async def completions(
    body: CompletionRequest, request: Request
) -> JSONResponse | StreamingResponse:
    return await _completions(body, request, body.model)


@router.post("/v1/engines/{engine}/completions", response_model=None)
async def engine_completions(
    engine: str, body: CompletionRequest, request: Request
) -> JSONResponse | StreamingResponse:
    """The route the 0.x `openai` client calls for `Completion.create(engine=...)`."""
    return await _completions(body, request, engine)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request) -> JSONResponse | StreamingResponse:
    state = state_of(request)
    host = state.models.get(body.model)
    runner = host.ready()
    if body.top_logprobs is not None and not body.logprobs:
        raise invalid("top_logprobs needs logprobs: true", "top_logprobs")
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    params = sampling_params(body, state.settings, logprobs)
    check_vocabulary(params, runner.engine.info.vocab_size)
    runner.engine.copy_index(params)  # no index for max_copy: a 400 now, not mid-stream
    prompt, stops = render_chat(runner.engine, [(m.role, m.text()) for m in body.messages])
    if stops:
        params = params.model_copy(update={"stop": [*params.stop, *stops]})
    call = _Call(
        state,
        host,
        [prompt],
        params,
        "chat.completion",
        body.stream,
        bool(body.stream_options and body.stream_options.include_usage),
    )
    return await call.run()


async def _completions(
    body: CompletionRequest, request: Request, model: str | None
) -> JSONResponse | StreamingResponse:
    state = state_of(request)
    host = state.models.get(model)
    runner = host.ready()
    if body.suffix:
        raise invalid("suffix (insertion) is not supported", "suffix")
    if body.best_of is not None and body.best_of != (body.n or 1):
        raise invalid("best_of must equal n (or be omitted)", "best_of")
    params = sampling_params(body, state.settings, body.logprobs, body.echo)
    check_vocabulary(params, runner.engine.info.vocab_size)
    runner.engine.copy_index(params)  # no index for max_copy: a 400 now, not mid-stream
    prompts = _prompt_texts(body.prompt, runner.engine.detokenize, runner.engine.info.vocab_size)
    call = _Call(
        state,
        host,
        prompts,
        params,
        "text_completion",
        body.stream,
        bool(body.stream_options and body.stream_options.include_usage),
    )
    return await call.run()


def _prompt_texts(prompt: Any, detokenize: Any, vocab: int) -> list[str]:
    """The prompt as texts: a string, strings, token ids, or lists of token ids."""
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise invalid("prompt must not be an empty list", "prompt")
    items = prompt if isinstance(prompt[0], list | str) else [prompt]
    texts = []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
            continue
        if any(not 0 <= t < vocab for t in item):
            raise invalid(f"prompt token ids lie in [0, {vocab})", "prompt")
        texts.append(detokenize(item))
    return texts


class _Call:
    """One generation request: admitted, run (whole or streamed) and answered."""

    def __init__(
        self,
        state: ServerState,
        host: ModelHost,
        prompts: list[str],
        params: SamplingParams,
        kind: str,
        stream: bool,
        stream_usage: bool,
    ) -> None:
        self.state = state
        self.host = host
        self.runner = host.ready()
        self.prompts = prompts
        self.params = screen_prompt(state, prompts, params)
        self.kind = kind  # "text_completion" or "chat.completion"
        self.stream = stream
        self.stream_usage = stream_usage
        self.id = ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.cancel = threading.Event()
        self._streamed: list[Completion] = []
        self.begun = time.monotonic()
        self.deadline = self.begun + state.settings.request_timeout_s
        self.prompt_tokens = [len(self.runner.engine.tokenize(p)) for p in prompts]
        longest = max(self.prompt_tokens)
        if longest > state.settings.max_prompt_tokens:
            raise too_long(longest, state.settings)
        if len(prompts) * params.n > state.settings.max_n:
            raise invalid(f"prompts × n is at most {state.settings.max_n} on this server", "n")

    async def run(self) -> JSONResponse | StreamingResponse:
        admission = self.host.reserve()
        if not self.stream:
            try:
                await admission.start(self.deadline)
                completions = await in_thread(
                    lambda: self.runner.complete(self.prompts, self.params, self.cancel),
                    self.cancel,
                    self.deadline,
                )
            finally:
                admission.end()
            return JSONResponse(self._whole(completions))
        return event_stream(self._events(admission), admission)

    # -- whole answers --------------------------------------------------------------------

    def _whole(self, completions: Sequence[Completion]) -> dict[str, Any]:
        prompt_tokens = sum(self.prompt_tokens)
        completion_tokens = sum(len(c.token_ids) for c in completions)
        self.state.metrics.generated(self.host.name, prompt_tokens, completion_tokens)
        choices = [self._choice(c) for c in completions]
        return {
            "id": self.id,
            "object": self.kind,
            "created": self.created,
            "model": self.host.name,
            "choices": choices,
            "usage": _usage(prompt_tokens, completion_tokens),
        }

    def _choice(self, c: Completion) -> dict[str, Any]:
        c = screen_completion(self.state, c)
        reason = _finish(c.finish_reason, c.finish_message)
        if self.kind == "chat.completion":
            lp = None
            if c.logprobs is not None:
                lp = {"content": [_chat_logprob(t) for t in c.logprobs]}
            message = {"role": "assistant", "content": c.text}
            return {"index": c.index, "message": message, "logprobs": lp, **reason}
        legacy = None
        if c.logprobs is not None:
            legacy = _legacy_logprobs(c.logprobs, self._echo_length(c.prompt_index))
        return {"index": c.index, "text": c.text, "logprobs": legacy, **reason}

    def _echo_length(self, prompt_index: int) -> int:
        """Characters of echoed prompt before the generated text (0 without echo)."""
        if not self.params.echo:
            return 0
        engine = self.runner.engine
        return len(engine.detokenize(engine.tokenize(self.prompts[prompt_index])))

    # -- streams --------------------------------------------------------------------------

    async def _events(self, admission: Admission) -> AsyncIterator[str]:
        started = False
        try:
            await admission.start(self.deadline)
            if self.kind == "chat.completion":
                for i in range(len(self.prompts) * self.params.n):
                    yield _sse(self._chunk(i, {"role": "assistant", "content": ""}, None))
            async for delta in self._pieces():
                if not started:
                    started = True
                    self.state.metrics.first(self.host.name, time.monotonic() - self.begun)
                yield _sse(self._piece(delta))
            completion_tokens = sum(len(c.token_ids) for c in self._streamed)
            self.state.metrics.generated(self.host.name, sum(self.prompt_tokens), completion_tokens)
            if self.stream_usage:
                usage = _usage(sum(self.prompt_tokens), completion_tokens)
                yield _sse({**self._chunk(0, {}, None), "choices": [], "usage": usage})
        except APIError as err:
            yield _sse(err.body())  # headers are gone: the error travels as an event
        except Exception as err:
            yield _sse(APIError(500, f"generation failed: {err}").body())
        finally:
            admission.end()
            self.cancel.set()
        yield "data: [DONE]\n\n"

    async def _pieces(self) -> AsyncIterator[Delta]:
        """The decoder's deltas as it makes text final (empty ones left out)."""

        def produce(emit: Callable[[Delta], None]) -> None:
            completions = self.runner.stream_into(emit, self.prompts, self.params, self.cancel)
            self._streamed.extend(completions)  # for usage: the tokens, not re-tokenised text

        deltas: AsyncIterator[Delta] = run_emitting(produce, self.cancel)
        async for delta in deltas:
            if time.monotonic() > self.deadline:
                raise APIError(504, "the request timed out", None, "timeout")
            if delta.text or delta.finish_reason:
                yield delta

    def _chunk(self, index: int, delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.host.name,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
            ],
        }

    def _piece(self, delta: Delta) -> dict[str, Any]:
        finish = delta.finish_reason
        reason = _finish(finish, delta.finish_message) if finish else {"finish_reason": None}
        logprobs = delta.logprobs
        if self.kind == "chat.completion":
            chunk = self._chunk(delta.index, {"content": delta.text} if delta.text else {}, None)
            chunk["choices"][0].update(reason)
            if logprobs:
                chunk["choices"][0]["logprobs"] = {"content": [_chat_logprob(t) for t in logprobs]}
            return chunk
        legacy = None
        if logprobs:
            prompt_index = delta.index // self.params.n
            legacy = _legacy_logprobs(logprobs, self._echo_length(prompt_index))
        choice = {"index": delta.index, "text": delta.text, "logprobs": legacy, **reason}
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.host.name,
            "choices": [choice],
        }


def _finish(reason: FinishReason, message: str | None) -> dict[str, Any]:
    """OpenAI's finish_reason for ours, with MuseGPT's `finish_message` when it needs one:
    a row whose every token was ruled out ends as OpenAI's "content_filter" (the request's
    own filters left nothing to write)."""
    names = {"length": "length", "no_allowed_token": "content_filter"}
    out: dict[str, Any] = {"finish_reason": names.get(reason, "stop")}
    if message:
        out["finish_message"] = message
    return out


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _legacy_logprobs(tokens: Sequence[TokenLogprob], echo_length: int) -> dict[str, Any]:
    """The completions endpoint's log-probability shape (parallel lists); offsets count
    characters of the choice's text (echoed prompt included)."""
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{alt.token: alt.logprob for alt in t.top} for t in tokens],
        "text_offset": [echo_length + t.text_offset for t in tokens],
        "token_ids": [t.token_id for t in tokens],
    }


def _chat_logprob(t: TokenLogprob) -> dict[str, Any]:
    return {
        "token": t.token,
        "logprob": t.logprob,
        "bytes": list(t.bytes),
        "top_logprobs": [
            {"token": alt.token, "logprob": alt.logprob, "bytes": list(alt.bytes)} for alt in t.top
        ],
    }


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
