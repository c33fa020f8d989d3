"""Request bodies of the OpenAI-compatible endpoints, and their translation to
`SamplingParams` (the one parameter model): OpenAI's names map to MuseGPT's, and every
`SamplingParams` field may also be sent as an extra body field, as vLLM and llama.cpp allow.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import check_token_ids
from musegpt.server.errors import APIError, from_validation, invalid
from musegpt.server.settings import ServerSettings

SAMPLING_FIELDS = set(SamplingParams.model_fields)
# llama.cpp server's names for SamplingParams fields that MuseGPT names otherwise.
LLAMA_CPP_NAMES = {"repeat_penalty": "repetition_penalty"}


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Common(BaseModel):
    """Fields completions and chat share; unknown fields are kept and checked as
    SamplingParams fields."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, description="a model this server offers; omitted = default")
    max_tokens: int | None = Field(None, description="tokens to generate at most")
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]] = ""
    suffix: str | None = None
    logprobs: int | None = None
    echo: bool = False
    best_of: int | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid("only text content parts are supported", "messages")
            parts.append(part["text"])
        return "".join(parts)


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None


# OpenAI name -> SamplingParams name, for renaming fields back in error messages
RENAMED = {"max_new_tokens": "max_tokens"}


def sampling_params(
    body: _Common, settings: ServerSettings, logprobs: int | None, echo: bool = False
) -> SamplingParams:
    """The request's `SamplingParams`, with the server's limits; a 400 naming the field
    otherwise."""
    chosen: dict[str, Any] = {}
    for name in ("temperature", "top_p", "n", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(body, name)
        if value is not None:
            chosen[name] = value
    max_tokens = body.max_tokens
    if isinstance(body, ChatRequest) and body.max_completion_tokens is not None:
        max_tokens = body.max_completion_tokens
    chosen["max_new_tokens"] = 16 if max_tokens is None else max_tokens
    if body.stop is not None:
        chosen["stop"] = [body.stop] if isinstance(body.stop, str) else body.stop
    if body.logit_bias:
        chosen["logit_bias"] = _token_bias(body.logit_bias)
    if logprobs is not None:
        chosen["logprobs"] = logprobs
    if echo:
        chosen["echo"] = True
    sent = dict(body.model_extra or {})
    extras = {LLAMA_CPP_NAMES.get(k, k): v for k, v in sent.items()}
    unknown = [k for k in extras if k not in SAMPLING_FIELDS]
    if unknown:
        raise invalid(f"unknown parameter {unknown[0]!r}", unknown[0])
    rename = {} if "max_new_tokens" in extras else dict(RENAMED)
    rename |= {LLAMA_CPP_NAMES[k]: k for k in sent if k in LLAMA_CPP_NAMES}  # as it was sent
    try:
        params = SamplingParams(**{**chosen, **extras})
    except ValidationError as err:
        raise from_validation(err.errors(), rename) from None
    _within_limits(params, settings, rename)
    return params


def _token_bias(bias: dict[str, float]) -> dict[int, float]:
    out = {}
    for key, value in bias.items():
        try:
            out[int(key)] = value
        except ValueError:
            raise invalid(f"logit_bias keys are token ids (got {key!r})", "logit_bias") from None
    return out


def _within_limits(
    params: SamplingParams, settings: ServerSettings, rename: dict[str, str]
) -> None:
    if params.n > settings.max_n:
        raise invalid(f"n is at most {settings.max_n} on this server", "n")
    if params.max_new_tokens > settings.max_tokens:
        field = rename.get("max_new_tokens", "max_new_tokens")
        raise invalid(f"{field} is at most {settings.max_tokens} on this server", field)


def check_vocabulary(params: SamplingParams, vocab_size: int) -> None:
    """A 400 naming a few of the `logit_bias` ids the model has no token for, and the range."""
    try:
        check_token_ids(params.logit_bias.keys(), vocab_size, "logit_bias")
    except ValueError as err:
        raise invalid(str(err), "logit_bias") from None


def too_long(prompt_tokens: int, settings: ServerSettings) -> APIError:
    return APIError(
        400,
        f"the prompt has {prompt_tokens} tokens; this server accepts at most "
        f"{settings.max_prompt_tokens}",
        "prompt",
        "context_length_exceeded",
    )
