"""`POST /v1/moderations` in OpenAI's shape, and what `musegpt serve --moderation` does to
the generation endpoints: `flag` records each generation's moderation result with it (a
studio work's `meta`, and the params of every generation the works library records);
`block` answers a flagged prompt with a 400 (`content_policy_violation`), steers generation
away from flagged words while it is written (banned-phrase backtracking) and withholds a
finished text that is still flagged (`finish_reason: "content_filter"`)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from musegpt.generation.decoder import Completion
from musegpt.generation.params import SamplingParams
from musegpt.safety.categories import MODEL
from musegpt.server.errors import APIError, invalid
from musegpt.server.settings import ServerSettings
from musegpt.server.state import ServerState

MAX_INPUTS = 256
WITHHELD = "the generated text was withheld: moderation flagged it as {categories}"

router = APIRouter()


class TextInput(BaseModel):
    """One part of OpenAI's multi-modal input list; only text is moderated here."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str | list[str] | list[TextInput] = Field(
        ..., description="a text, a list of texts, or OpenAI's list of {type: text, text}"
    )
    model: str | None = Field(None, description="accepted for compatibility; always " + MODEL)


def _texts(given: str | list[str] | list[TextInput]) -> list[str]:
    if isinstance(given, str):
        return [given]
    if not given:
        raise invalid("input must not be an empty list", "input")
    if len(given) > MAX_INPUTS:
        raise invalid(f"input holds at most {MAX_INPUTS} texts", "input")
    texts = []
    for part in given:
        if isinstance(part, str):
            texts.append(part)
        elif part.type == "text" and part.text is not None:
            texts.append(part.text)
        else:
            raise invalid(
                f"input of type {part.type!r} is not supported: MuseGPT moderates text only",
                "input",
            )
    return texts


@router.post("/v1/moderations")
def moderations(body: ModerationRequest, request: Request) -> dict[str, Any]:
    from musegpt.safety import moderate

    results = moderate(_texts(body.input))
    return {
        "id": "modr-" + uuid.uuid4().hex[:24],
        "model": MODEL,
        "results": [r.openai() for r in results],
    }


# -- the generation endpoints under --moderation -------------------------------------------


def prepare(settings: ServerSettings) -> None:
    """Under `flag` or `block`, build the moderator (and the steering patterns) in the
    background at startup, so the first request does not wait seconds for them."""
    if settings.moderation == "off":
        return

    def build() -> None:
        from musegpt.safety import moderator
        from musegpt.safety.steering import steering_patterns

        moderator().moderate(["warm up"])  # also loads the English classifier
        if settings.moderation == "block":
            steering_patterns()

    threading.Thread(target=build, name="moderation-prepare", daemon=True).start()


def screen_prompt(
    state: ServerState, texts: Sequence[str], params: SamplingParams
) -> SamplingParams:
    """Under `block`: a 400 for a flagged prompt, and `params` that steer generation away
    from flagged words. Otherwise `params` unchanged."""
    if state.settings.moderation != "block":
        return params
    from musegpt.safety import moderate
    from musegpt.safety.steering import steering_patterns

    for result in moderate(list(texts)):
        if result.flagged:
            raise APIError(
                400,
                "the prompt was flagged by moderation as "
                f"{', '.join(result.flagged_categories)}; this server refuses such prompts",
                "prompt",
                "content_policy_violation",
            )
    steered = params.model_copy(
        update={"banned_regex": [*params.banned_regex, *steering_patterns()]}
    )
    if "banned_regex" not in params.model_fields_set:  # provenance keeps the client's params
        steered.model_fields_set.discard("banned_regex")
    return steered


def screen_completion(state: ServerState, completion: Completion) -> Completion:
    """Under `block`: a finished text still flagged is withheld, ending as
    `content_filter`. Otherwise the completion unchanged."""
    if state.settings.moderation != "block":
        return completion
    from musegpt.safety import moderate

    result = moderate(completion.text)[0]
    if not result.flagged:
        return completion
    message = WITHHELD.format(categories=", ".join(result.flagged_categories))
    return dataclasses.replace(
        completion, text="", finish_reason="no_allowed_token", finish_message=message
    )


def provenance_params(state: ServerState, params: dict[str, Any], output: str) -> dict[str, Any]:
    """`params` as the works library records them: under `flag` or `block`, with the
    moderation of the generated `output` (a client saving what /v1/completions wrote)."""
    if state.settings.moderation == "off":
        return params
    from musegpt.safety import moderate

    return {**params, "moderation": moderate(output)[0].openai()}


def screen_work(state: ServerState, result: dict[str, Any]) -> dict[str, Any]:
    """A studio result under `flag` or `block`: its moderation goes into `meta` (and so into
    its provenance); under `block` a flagged text is withheld."""
    mode = state.settings.moderation
    if mode == "off":
        return result
    from musegpt.safety import moderate

    moderation = moderate(str(result.get("text", "")))[0]
    meta = {**result.get("meta", {}), "moderation": moderation.openai()}
    if mode == "block" and moderation.flagged:
        message = WITHHELD.format(categories=", ".join(moderation.flagged_categories))
        return {
            **result,
            "text": "",
            "meta": meta,
            "finish_reason": "content_filter",
            "finish_message": message,
        }
    return {**result, "meta": meta}
