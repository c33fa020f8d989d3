"""Studio endpoints: every writing task and poem forms, streamed or whole, with the
provenance of each result kept in the works library when a project is named."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from musegpt.engines.base import Engine
from musegpt.generation.params import SamplingParams
from musegpt.generation.scheduler import Cancelled
from musegpt.originality.check import longest_copy_meta
from musegpt.server.errors import APIError, from_validation, invalid
from musegpt.server.hosts import Admission, event_stream, in_thread, run_emitting
from musegpt.server.moderation_api import screen_prompt, screen_work
from musegpt.server.openai_api import _sse
from musegpt.server.state import ServerState, state_of
from musegpt.server.works_api import check_provenance_target, run_on_store
from musegpt.studio.context import ContextError, LoreEntry, assemble
from musegpt.studio.poem import PoemError
from musegpt.studio.registry import TASKS, PoemRequest, TaskName, TaskRequest
from musegpt.studio.studio import Studio, slug
from musegpt.studio.tasks import StudioError
from musegpt.studio.work import Work

router = APIRouter(prefix="/v1")


class StudioRequest(BaseModel):
    """The body of `POST /v1/studio/{task}`: the task's own fields (see
    `musegpt.studio.registry`; left out, they take the task's defaults, the same as on the
    command line), capped where a server must cap them, and how to run it."""

    model: str | None = None
    text: str = Field("", max_length=200_000, description="the premise, topic, subject or text")
    title: str | None = Field(None, max_length=200)
    style: str | None = Field(None, max_length=2000, description="rewrite: the style to aim for")
    sample: str | None = Field(None, max_length=20_000, description="rewrite: a style sample")
    alternatives: int | None = Field(None, ge=1, le=8, description="rewrite: how many versions")
    kind: str | None = Field(None, max_length=100, description="brainstorm: what kind of ideas")
    count: int | None = Field(None, ge=1, le=20, description="brainstorm / plot-help: how many")
    conflict: str | None = Field(None, max_length=2000, description="plot-help: the problem")
    chapters: int | None = Field(None, ge=1, le=20, description="story: chapters to write")
    form: str | None = Field(None, max_length=60, description="poem: a built-in form's name")
    rhymes: Literal["pingshui", "xinyun"] | None = Field(None, description="poem: rhyme book")
    strict: bool | None = Field(None, description="poem: enforce 平仄 (Chinese forms)")
    attempts: int | None = Field(None, ge=1, le=10, description="poem: tries before giving up")
    adapter: str | None = Field(
        None, max_length=200, description="script / poem: auto, none, or an adapter's name"
    )
    max_tokens: int | None = Field(None, ge=1, description="continue: tokens to write")
    lang: Literal["en", "zh"] | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="SamplingParams fields")
    stream: bool = False
    project_id: int | None = Field(None, ge=1, le=2**62, description="keep provenance here")
    document_id: int | None = Field(None, ge=1, le=2**62)
    parent_id: int | None = Field(
        None, ge=1, le=2**62, description="the generation whose text this one works on"
    )


class TaskFailed(APIError):
    """422: the task ran but produced nothing valid; a poem's carries the checker's reasons
    and report on its last attempt."""

    def __init__(self, err: StudioError) -> None:
        super().__init__(422, str(err), None, "task_failed")
        self.details: dict[str, Any] = {}
        if isinstance(err, PoemError):
            self.code = "form_not_met"
            self.details = {
                "reasons": list(err.report.reasons),
                "text": err.text,
                "report": report_dict(err.report),
            }

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"].update(self.details)
        return body


class ContextRequest(BaseModel):
    """The body of `POST /v1/studio/context`: the text before the cursor, and the project
    whose memory, lorebook and author's note go with it (fields given here win over the
    project's saved ones, so the page can show unsaved edits)."""

    model: str | None = None
    text: str = Field("", max_length=1_000_000)
    max_tokens: int = Field(120, ge=1, description="room kept for the continuation")
    project_id: int | None = Field(None, ge=1, le=2**62)
    memory: str | None = Field(None, max_length=20_000)
    authors_note: str | None = Field(None, max_length=5_000)
    note_depth: int | None = Field(None, ge=0, le=100)


class CheckRequest(BaseModel):
    text: str = Field(..., max_length=20_000)
    form: str = Field(..., max_length=60)


@router.get("/studio/tasks")
def studio_tasks() -> dict[str, Any]:
    from musegpt.forms import builtin_forms

    forms = [
        {"name": f.name, "display_name": f.display_name, "language": f.language}
        for f in builtin_forms()
    ]
    return {"tasks": list(TASKS), "forms": forms}


@router.post("/forms/check")
def check_form(body: CheckRequest) -> dict[str, Any]:
    from musegpt.forms import check

    return report_dict(check(body.text, _form(body.form)))


@router.post("/studio/context")
def studio_context(body: ContextRequest, request: Request) -> dict[str, Any]:
    """Exactly what the model is given to continue `text`, with its token count and the
    lorebook entries the recent text activated."""
    state = state_of(request)
    engine = state.models.get(body.model).ready().engine
    limit = state.settings.max_tokens
    if body.max_tokens > limit:
        raise invalid(f"max_tokens is at most {limit} on this server", "max_tokens")
    blocks: dict[str, Any] = {"memory": "", "authors_note": "", "note_depth": 3}
    lore: list[LoreEntry] = []
    if body.project_id is not None:
        pid = body.project_id
        blocks.update(run_on_store(request, lambda s: s.bible(pid)))
        entries = run_on_store(request, lambda s: s.lore(pid))
        lore = [LoreEntry(e["name"], tuple(e["keys"]), e["text"]) for e in entries]
    chosen = body.model_dump(include={"memory", "authors_note", "note_depth"}, exclude_none=True)
    blocks.update(chosen)
    budget = min(engine.context_length, state.settings.max_prompt_tokens + body.max_tokens)
    try:
        context = assemble(
            body.text,
            lambda text: len(engine.tokenize(text)),
            budget - body.max_tokens,
            blocks["memory"],
            lore,
            blocks["authors_note"],
            int(blocks["note_depth"]),
        )
    except ContextError as err:
        raise invalid(str(err), "memory") from None
    return {**asdict(context), "model": engine.name}


@router.post("/studio/{task}", response_model=None)
async def run_task(
    task: TaskName, body: StudioRequest, request: Request
) -> JSONResponse | StreamingResponse:
    state = state_of(request)
    host = state.models.get(body.model)
    runner = host.ready()
    params = screen_prompt(state, [body.text], params_of(body.params))
    task_request = _task_request(task, body, state)  # bad fields are a 400 before any work
    if body.adapter is not None:
        _check_adapter(runner.engine, body.adapter)
    limit = state.settings.max_tokens
    asked = params.max_new_tokens if "max_new_tokens" in params.model_fields_set else 0
    if max(asked, body.max_tokens or 0) > limit:
        raise invalid(f"max_tokens is at most {limit} on this server", "max_tokens")
    if len(runner.engine.tokenize(body.text)) > state.settings.max_prompt_tokens:
        raise invalid("the text is longer than this server accepts", "text")
    if body.project_id is not None:  # a missing project is a 404 before any work starts
        check_provenance_target(request, body.project_id, body.document_id, body.parent_id)
    elif body.parent_id is not None:
        raise invalid("parent_id needs the project_id it belongs to", "parent_id")
    cancel = threading.Event()
    deadline = time.monotonic() + state.settings.request_timeout_s
    admission = host.reserve()

    def work(sink: Callable[[str], None] | None) -> dict[str, Any]:
        with runner.borrow() as engine:
            return _perform(task, task_request, body, engine, params, sink, state)

    if not body.stream:
        try:
            await admission.start(deadline)
            result = await in_thread(lambda: work(stopper(cancel, None)), cancel, deadline)
        finally:
            admission.end()
        return JSONResponse(result)

    def produce(emit: Emit) -> None:
        sink = stopper(cancel, lambda piece: emit({"type": "text", "text": piece}))
        emit({"type": "work", "work": work(sink)})

    return task_stream(produce, admission, cancel, deadline)


Emit = Callable[[dict[str, Any]], None]


def task_stream(
    produce: Callable[[Emit], None], admission: Admission, cancel: threading.Event, deadline: float
) -> StreamingResponse:
    """Server-sent events of what `produce` emits on its own thread, once admitted; errors
    (headers are sent by then) come as an event in the stream, never as a 500."""

    async def events() -> AsyncIterator[str]:
        try:
            await admission.start(deadline)
            async for event in run_emitting(produce, cancel):
                if time.monotonic() > deadline:
                    raise APIError(504, "the request timed out", None, "timeout")
                yield _sse(event)
        except APIError as err:
            yield _sse(err.body())
        except Exception as err:  # headers are sent: report in the stream, not as a 500
            yield _sse(APIError(500, f"the task failed: {err}").body())
        finally:
            admission.end()
            cancel.set()
        yield "data: [DONE]\n\n"

    return event_stream(events(), admission)


def stopper(cancel: threading.Event, sink: Callable[[str], None] | None) -> Callable[[str], None]:
    """A sink that stops the task (by raising in the generating thread) once cancelled."""

    def forward(piece: str) -> None:
        if cancel.is_set():
            raise Cancelled("request cancelled")
        if sink is not None:
            sink(piece)

    return forward


def params_of(fields: dict[str, Any]) -> SamplingParams:
    """The request's sampling parameters; bad ones are a 400 naming the field."""
    try:
        return SamplingParams(**fields)
    except ValidationError as err:
        raise from_validation(err.errors()) from None
    except TypeError as err:
        raise invalid(str(err), "params") from None


def _form(name: str) -> Any:
    from musegpt.forms import FormError, UnknownFormError, get_form

    if "/" in name or "\\" in name or name.endswith((".yaml", ".yml")):
        raise invalid("forms are named, not read from files, on the server", "form")
    try:
        return get_form(name)
    except (UnknownFormError, FormError, ValueError) as err:
        raise invalid(str(err), "form") from None


def _task_request(task: str, body: StudioRequest, state: ServerState) -> TaskRequest:
    """The task's request from the body's fields that it takes and the client set."""
    spec = TASKS[task]
    if task == "poem" and body.form is not None:
        _form(body.form)  # named forms only: the server never reads a form file
    fields = {
        name: getattr(body, name)
        for name in spec.request.model_fields
        if name in StudioRequest.model_fields and getattr(body, name) is not None
    }
    if task == "continue" and "max_tokens" not in fields:  # the default, within this server's cap
        default = spec.request.model_fields["max_tokens"].default
        fields["max_tokens"] = min(default, state.settings.max_tokens)
    if task == "story":  # a story is a project folder in the server's data folder
        fields["project"] = (
            state.settings.data_dir / "stories" / slug(body.text or body.title or "")
        )
    try:
        request: TaskRequest = spec.request.model_validate(fields)
    except ValidationError as err:
        raise from_validation([_plain(e) for e in err.errors(include_url=False)]) from None
    except ValueError as err:  # FormError and the like, raised outside a field
        raise invalid(str(err), "form" if task == "poem" else None) from None
    return request


def _check_adapter(engine: Engine, adapter: str) -> None:
    """An adapter the model cannot write with is a 400 naming it, before any work."""
    from musegpt.adapters.choice import adapter_choice
    from musegpt.engines.base import EngineError

    try:
        adapter_choice(engine, adapter)
    except EngineError as err:
        raise invalid(str(err), "adapter") from None


def _plain(error: Any) -> Any:
    """A custom check's message without pydantic's "Value error, " prefix."""
    if error.get("type") == "value_error" and "error" in error.get("ctx", {}):
        return {**error, "msg": str(error["ctx"]["error"])}
    return error


def _perform(
    task: str,
    task_request: TaskRequest,
    body: StudioRequest,
    engine: Engine,
    params: SamplingParams,
    sink: Callable[[str], None] | None,
    state: ServerState,
) -> dict[str, Any]:
    spec = TASKS[task]
    studio = Studio(engine, params, body.lang, sink)
    try:
        work = spec.perform(studio, task_request)
    except StudioError as err:  # the task's own checks: missing input, or no valid result
        raise TaskFailed(err) from None
    result = work_dict(work)
    if isinstance(task_request, PoemRequest):
        from musegpt.forms import check

        report = check(work.text, task_request.chosen_form())
        result.update(passed=report.passed, report=report_dict(report))
    result = screen_work(state, result)
    result["longest_copy"] = longest_copy_meta(result["text"], engine.path, engine.tokenizer)
    store = state.store
    if store is not None and body.project_id is not None:
        result["generation_id"] = store.record_generation(
            spec.name,
            engine.name,
            {
                **params.model_dump(exclude_unset=True),
                **result["meta"],
                "parts": result["parts"],  # alternatives and ideas, to offer again
                "longest_copy": result["longest_copy"],
            },
            body.text,
            result["text"],
            body.project_id,
            body.document_id,
            body.parent_id,
        )
    return result


def work_dict(work: Work) -> dict[str, Any]:
    return {
        "task": work.task,
        "title": work.title,
        "lang": work.lang,
        "text": work.text,
        "parts": work.parts,
        "meta": work.meta,
        "markdown": work.markdown(),
    }


def report_dict(report: Any) -> dict[str, Any]:
    """The checker's report, line by line, as JSON."""
    lines = []
    for line in report.lines:
        lines.append(
            {
                "number": line.number,
                "text": line.text,
                "units": line.units_text,
                "length_ok": line.length_ok,
                "budget": None if line.budget is None else [line.budget.low, line.budget.high],
                "end": line.end,
                "rhyme_letter": line.rhyme_letter,
                "rhyme_kind": line.rhyme_kind,
                "rhymes_with": line.rhymes_with,
                "pattern": line.pattern,
                "expected": line.expected,
                "pattern_score": line.pattern_score,
                "problems": list(line.problems),
            }
        )
    return {
        "form": report.form.name,
        "passed": report.passed,
        "summary": report.summary(),
        "reasons": list(report.reasons),
        "notes": list(report.notes),
        "pattern_score": report.pattern_score,
        "lines": lines,
    }
