"""Music endpoints: compose a tune (ABC) from a request such as "a lively jig in D major",
and render any ABC tune as MIDI, WAV or an SVG score for the web studio's player."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from musegpt.generation.params import SamplingParams
from musegpt.music.compose import MUSIC_MODEL, compose_headers
from musegpt.music.tune import MissingToolError, Tune
from musegpt.originality.check import longest_copy_meta
from musegpt.server.errors import APIError, invalid
from musegpt.server.hosts import ModelHost, in_thread
from musegpt.server.state import ServerState, state_of
from musegpt.server.works_api import check_provenance_target, run_on_store

router = APIRouter(prefix="/v1/music")
RenderFormat = Literal["midi", "wav", "svg"]
RENDER_TIMEOUT_S = 120.0  # FluidSynth renders a 16-bar tune in about a second
MEDIA_TYPES: dict[str, str] = {"midi": "audio/midi", "wav": "audio/wav", "svg": "image/svg+xml"}


class ComposeRequest(BaseModel):
    model: str | None = Field(None, description=f"an ABC model served here; default {MUSIC_MODEL}")
    request: str = Field(
        "a lively jig in D major",
        min_length=1,
        max_length=500,
        description="rhythm (jig, reel, waltz...), key and metre in words; the rest is the title",
    )
    title: str | None = Field(None, max_length=60)
    bars: int = Field(16, ge=1, le=64)
    constrained: bool = Field(True, description="false: the model writes freely")
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    # The same field, range and help as every other request's `max_copy`.
    max_copy: Annotated[int | None, SamplingParams.model_fields["max_copy"]] = None
    project_id: int | None = Field(None, ge=1, le=2**62, description="keep provenance here")
    document_id: int | None = Field(None, ge=1, le=2**62)


class RenderRequest(BaseModel):
    abc: str = Field(..., min_length=1, max_length=100_000, description="one ABC tune")
    format: RenderFormat


@router.post("/compose")
async def compose_tune(body: ComposeRequest, request: Request) -> dict[str, Any]:
    from musegpt.music.abc import header_for

    state = state_of(request)
    host = _music_host(state, body.model)
    runner = host.ready()
    header = header_for(body.request, body.title)
    if body.project_id is not None:  # a missing project is a 404 before any work starts
        check_provenance_target(request, body.project_id, body.document_id)
    deadline = time.monotonic() + state.settings.request_timeout_s
    cancel = threading.Event()  # set when the client goes away or the deadline passes
    admission = host.reserve()

    def work() -> dict[str, Any]:
        with runner.borrow() as engine:
            tune = compose_headers(
                engine,
                [header],
                body.bars,
                body.seed,
                body.constrained,
                body.temperature,
                body.top_p,
                cancel,
                {"max_copy": body.max_copy},
            )[0]
        result = tune_dict(tune, host.name, body.seed)  # music21's check, off the event loop
        result["longest_copy"] = longest_copy_meta(tune.abc, engine.path, engine.tokenizer)
        return result

    try:
        await admission.start(deadline)
        result = await in_thread(work, cancel, deadline)
    except ValueError as err:  # the model cannot write ABC (no header-aware vocabulary...)
        raise APIError(422, f"the model could not write a tune: {err}", "model") from None
    finally:
        admission.end()
    if body.project_id is not None:
        params = body.model_dump(exclude={"project_id", "document_id"})
        params["longest_copy"] = result["longest_copy"]
        result["generation_id"] = run_on_store(
            request,
            lambda s: s.record_generation(
                "compose", host.name, params, body.request, result["abc"], body.project_id,
                body.document_id,
            ),
        )  # fmt: skip
    return result


@router.post("/render", response_class=Response)
async def render_tune(body: RenderRequest) -> Response:
    """The tune as a file: MIDI (music21), WAV (FluidSynth) or an SVG score (abcm2ps)."""
    deadline = time.monotonic() + RENDER_TIMEOUT_S

    def work() -> bytes:  # music21 and the renderers take a while: not on the event loop
        return _render(_tune_from_abc(body.abc), body.format)

    try:
        data = await in_thread(work, threading.Event(), deadline)
    except MissingToolError as err:
        raise APIError(501, str(err), "format", "missing_tool") from None
    except (OSError, ValueError) as err:
        raise invalid(f"the tune could not be rendered as {body.format}: {err}", "abc") from None
    return Response(data, media_type=MEDIA_TYPES[body.format])


def _music_host(state: ServerState, name: str | None) -> ModelHost:
    """The named model, else the packaged ABC model, which must be among the served ones."""
    if name:
        return state.models.get(name)
    if MUSIC_MODEL in state.models.hosts:
        return state.models.hosts[MUSIC_MODEL]
    raise APIError(
        404,
        f"this server has no music model: name one in `model`, or start the server with "
        f"`--model {MUSIC_MODEL}` (musegpt serve adds it unless --no-music)",
        "model",
        "model_not_found",
    )


def _tune_from_abc(abc: str) -> Tune:
    """A submitted tune, checked against the whitelist before any tool sees it."""
    from musegpt.music.abc import UnsafeAbcError, checked_abc
    from musegpt.music.tune import parse_abc

    try:
        header, body = checked_abc(abc)
    except UnsafeAbcError as err:
        raise invalid(f"the ABC was refused: {err}", "abc") from None
    tune = Tune(header, body)
    try:
        parse_abc(tune.abc)
    except Exception as err:  # music21 raises many kinds on broken ABC
        raise invalid(f"the ABC does not parse: {err}", "abc") from None
    return tune


def _render(tune: Tune, fmt: str) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"tune.{'mid' if fmt == 'midi' else fmt}"
        write = {"midi": tune.to_midi, "wav": tune.to_wav, "svg": tune.to_svg}[fmt]
        return write(path).read_bytes()


def tune_dict(tune: Tune, model: str, seed: int | None) -> dict[str, Any]:
    """A composed tune and how well it keeps its form (music21's reading of it)."""
    from musegpt.music.evaluate import score_tune

    score = score_tune(tune, lambda bars: 0)
    header = tune.header
    return {
        "abc": tune.abc,
        "title": header.title,
        "rhythm": header.rhythm,
        "metre": header.metre,
        "unit": header.unit,
        "key": header.key,
        "constrained": tune.constrained,
        "model": model,
        "seed": seed,
        "check": {
            "parses": score.parses,
            "bars": score.bars,
            "bars_right": score.bars_right,
            "metre_ok": score.metre_ok,
            "in_key": round(score.in_key, 3),
            "ends_on_tonic": score.ends_on_tonic,
        },
    }
