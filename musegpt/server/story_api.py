"""Stories in the studio: premise → bible and outline (editable) → chapters written one at
a time, streamed, each re-rollable; the same story.json model as `musegpt write story`, kept
in the works library (`musegpt.store.stories`) and moved in and out as story.json."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from musegpt.engines.base import Engine
from musegpt.generation.decoder import Completion, Delta, LogitsSource
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import LogitsProcessor
from musegpt.generation.scheduler import Cancelled
from musegpt.server.errors import APIError, invalid
from musegpt.server.hosts import in_thread
from musegpt.server.state import ServerState, state_of
from musegpt.server.studio_api import Emit, TaskFailed, params_of, stopper, task_stream
from musegpt.server.works_api import Id, checked_id, run_on_store
from musegpt.store import WorksStore
from musegpt.store.stories import (
    import_story,
    keep_story,
    new_story,
    open_story,
    premise_name,
    save_story,
)
from musegpt.studio import story as story_task
from musegpt.studio.studio import Studio
from musegpt.studio.tasks import StudioError
from musegpt.tokenizer.base import Tokenizer

router = APIRouter(prefix="/v1")
_busy: set[int] = set()  # projects whose story is being written now
_busy_lock = threading.Lock()


class StoryStart(BaseModel):
    premise: str = Field(..., min_length=1, max_length=4000, pattern=r"\S")
    name: str = Field("", max_length=200)
    chapters: int = Field(3, ge=1, le=30)
    scene_tokens: int = Field(450, ge=16, le=2048, description="tokens a chapter")
    lang: Literal["en", "zh"] = "en"


class StoryImport(BaseModel):
    story: dict[str, Any] = Field(..., description="story.json's content")
    name: str = Field("", max_length=200)


class StoryRun(BaseModel):
    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="SamplingParams fields")
    candidates: int = Field(1, ge=1, le=4, description="drafts of a chapter, the best kept")
    stream: bool = True


@router.post("/stories")
def start_story(body: StoryStart, request: Request) -> dict[str, Any]:
    """A new story project from a premise (planned by `…/story/plan`)."""
    data = new_story(body.premise, body.lang, body.chapters, body.scene_tokens)
    project = run_on_store(request, lambda s: import_story(s, data, body.name))
    return {"project": project, "story": data}


@router.post("/stories/import")
def import_story_json(body: StoryImport, request: Request) -> dict[str, Any]:
    """A story folder's story.json (from `musegpt write story`) as a new project."""
    project = run_on_store(request, lambda s: import_story(s, body.story, body.name))
    return {"project": project, "story": run_on_store(request, lambda s: s.story(project["id"]))}


@router.get("/projects/{project_id}/story")
def get_story(project_id: Id, request: Request) -> dict[str, Any]:
    """The project's story.json content: save it as story.json in a folder and the CLI
    goes on with it."""
    pid = _pid(project_id)
    story = run_on_store(request, lambda s: s.story(pid))
    if story is None:
        raise APIError(404, f"project {pid} has no story", None, "not_found")
    return story


@router.put("/projects/{project_id}/story")
def put_story(project_id: Id, body: dict[str, Any], request: Request) -> dict[str, Any]:
    """The story as the writer edited it (bible, outline, chapters): story.json's content."""
    pid = _pid(project_id)
    with _writing(pid):
        return run_on_store(request, lambda s: save_story(s, pid, body, _folder(request, pid)))


@router.post("/projects/{project_id}/story/plan", response_model=None)
async def plan_story(
    project_id: Id, body: StoryRun, request: Request
) -> JSONResponse | StreamingResponse:
    """The bible (when the story has none) and the outline's missing beats, saved beat by
    beat; a Stop keeps what was planned."""
    pid = _pid(project_id)

    def plan(project: story_task.StoryProject, studio: Studio) -> None:
        writer = studio.writer(project.premise)
        writer.lang = project.lang
        project.meta.setdefault("model", studio.engine.name)  # as `musegpt write story` keeps
        project.meta.setdefault("seed", writer.params.seed)
        if project.bible is None:
            story_task.check_premise(studio.engine, project.premise)
            writer.say("Planning the story bible…")
            project.bible = story_task.plan_bible(writer, project.premise)
            project.save()
        wanted = project.chapters - len(project.scenes)
        if wanted > 0:
            writer.say("Outlining…")
            story_task.plan_outline(writer, project, wanted)

    return await _run(request, pid, body, plan)


@router.post("/projects/{project_id}/story/chapters/{number}", response_model=None)
async def write_chapter(
    project_id: Id, number: int, body: StoryRun, request: Request
) -> JSONResponse | StreamingResponse:
    """Chapter `number` written (or written again) from its beat, streamed."""
    pid = _pid(project_id)
    story = get_story(pid, request)
    if story.get("bible") is None:
        raise invalid("plan the story first: the chapters follow its bible and outline", "number")
    if not 1 <= number <= len(story["scenes"]):
        raise invalid(f"the outline has chapters 1 to {len(story['scenes'])}", "number")

    store = run_on_store(request, lambda s: s)

    def write(project: story_task.StoryProject, studio: Studio) -> None:
        writer = studio.writer(project.premise)
        writer.lang = project.lang
        total = len(project.scenes)
        scene = project.scenes[number - 1]
        writer.say(f"Writing chapter {number} of {total}: {scene.beat}")
        story_task.write_scene(writer, project, number - 1, body.candidates)
        project.save()
        # A node of the project's tree: under the latest chapter before it, and a re-roll
        # a sibling of the chapter it replaces (the same parent and beat).
        store.record_generation(
            "chapter",
            studio.engine.name,
            {**writer.params.model_dump(exclude_unset=True), "chapter": number},
            f"Chapter {number}: {scene.beat}",
            scene.text,
            pid,
            parent_id=_latest_chapter(store, pid, number - 1),
        )

    return await _run(request, pid, body, write)


def _latest_chapter(store: WorksStore, pid: int, number: int) -> int | None:
    """The id of the project's latest generation of chapter `number`, if any."""
    made = [
        g["id"]
        for g in store.generations(pid)
        if g["task"] == "chapter" and g["params"].get("chapter") == number
    ]
    return made[-1] if made else None


async def _run(
    request: Request,
    pid: int,
    body: StoryRun,
    step: Callable[[story_task.StoryProject, Studio], None],
) -> JSONResponse | StreamingResponse:
    """`step` on the project's story with the model and parameters asked for; what it
    saved is kept in the library even when it fails or is stopped."""
    state = state_of(request)
    store = run_on_store(request, lambda s: s)
    host = state.models.get(body.model)
    runner = host.ready()
    params = params_of(body.params)
    folder = _folder(request, pid)
    get_story(pid, request)  # no story: a 404 before any work
    cancel = threading.Event()
    deadline = time.monotonic() + state.settings.request_timeout_s
    admission = host.reserve()

    def work(emit: Emit | None) -> dict[str, Any]:
        def status(text: str) -> None:
            stop(text)  # a Stop takes effect at the next status line or streamed sentence
            if emit is not None:
                emit({"type": "status", "text": text})
                emit({"type": "story", "story": keep_story(store, pid, folder)})

        stop = stopper(cancel, None)
        sink = stopper(
            cancel, None if emit is None else (lambda t: emit({"type": "text", "text": t}))
        )
        with _writing(pid), runner.borrow() as engine:
            project = open_story(store, pid, folder)
            stoppable = StoppableEngine(engine, cancel)
            try:
                step(project, Studio(stoppable, params, project.lang, sink, status))
            except StudioError as err:
                raise TaskFailed(err) from None
            finally:
                keep_story(store, pid, folder)
            if project.bible and store.project(pid)["name"] == premise_name(project.premise):
                store.rename_project(pid, project.bible.title)  # named by its premise so far
        return keep_story(store, pid, folder)

    if not body.stream:
        try:
            await admission.start(deadline)
            story = await in_thread(lambda: work(None), cancel, deadline)
        finally:
            admission.end()
        return JSONResponse(story)

    def produce(emit: Emit) -> None:
        emit({"type": "story", "story": work(emit)})

    return task_stream(produce, admission, cancel, deadline)


class StoppableEngine(Engine):
    """`engine` for one story step: a Stop ends the decode under way at its next token
    (planning draws stream nothing, so a sink could not stop them)."""

    backend = "stoppable"

    def __init__(self, engine: Engine, cancel: threading.Event) -> None:
        super().__init__(engine.name, engine.path, engine.overflow)
        self.inner = engine
        self.cancel = cancel
        self.lock = engine.lock
        # what the story code asks of it (one batch or row by row) is the inner engine's
        self.__dict__["max_batch"] = engine.max_batch

    @property
    def tokenizer(self) -> Tokenizer:
        return self.inner.tokenizer

    @property
    def context_length(self) -> int:
        return self.inner.context_length

    def logits_source(self, params: SamplingParams | None = None) -> LogitsSource:
        return self.inner.logits_source(params)

    def decode_deltas(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams,
        constraints: Sequence[LogitsProcessor],
        cancel: threading.Event | None,
        completions: list[Completion],
    ) -> Iterator[Delta]:
        for delta in self.inner.decode_deltas(prompts, params, constraints, cancel, completions):
            if self.cancel.is_set():
                raise Cancelled("stopped")
            yield delta


@contextmanager
def _writing(pid: int) -> Iterator[None]:
    """One change at a time to a story: a second is refused while the first runs."""
    with _busy_lock:
        if pid in _busy:
            raise invalid(
                f"the story of project {pid} is being written now: wait for it, or Stop it "
                "and try again in a moment",
                "project_id",
            )
        _busy.add(pid)
    try:
        yield
    finally:
        with _busy_lock:
            _busy.discard(pid)


def _folder(request: Request, pid: int) -> Path:
    state: ServerState = state_of(request)
    return state.settings.data_dir / "stories" / f"project-{pid}"


def _pid(project_id: int) -> int:
    return checked_id(project_id, "project_id")
