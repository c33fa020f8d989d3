"""Personalisation from the studio: train an adapter on a works project as a background job.

`POST /v1/projects/{id}/adapter` starts the job (one at a time per server: a second is
refused with 429, never 409, see errors.py), `GET /v1/adapter-jobs[/{id}]` reports its
progress (step, loss, held-out perplexity, tokens/s, ETA) and `DELETE /v1/adapter-jobs/{id}`
cancels it: the trainer stops before its next step and keeps its checkpoint. The work runs
on a thread of its own, so the server goes on answering; when it succeeds the adapter is
registered as `works-PROJECT` and served at once (it appears in `/v1/models`). A server
started later on the same data folder serves it again (`restore_adapters`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from musegpt.fileio import atomic_write_text
from musegpt.server.errors import APIError, invalid
from musegpt.server.state import ServerState, state_of

router = APIRouter(prefix="/v1")
BASE_MODEL = "gemma3-270m"
RUNS_FOLDER = "adapters"  # under the server's data_dir: one run folder per job
JOB_FILE = "job.json"  # in a run folder: the model it is served as, and its project
# A run folder's name, for folders from before job.json: MODEL-YYYYmmdd-HHMMSS-JOB
RUN_NAME = re.compile(r"(?P<model>works-.+)-\d{8}-\d{6}-\d+")
log = logging.getLogger(__name__)
JobState = Literal["running", "cancelling", "done", "failed", "cancelled"]
ACTIVE = ("running", "cancelling")
_lock = threading.Lock()  # guards every job's fields and the one-job-at-a-time rule


class AdapterJobRequest(BaseModel):
    """Settings a caller may change; the rest are a writer's project's defaults
    (`musegpt.adapters.works.WORKS_DEFAULTS`)."""

    model_config = {"extra": "forbid"}
    steps: int | None = Field(None, ge=1, le=10_000)
    max_minutes: float | None = Field(None, gt=0, le=24 * 60)
    layers: int | None = Field(None, ge=1, le=64)
    rank: int | None = Field(None, ge=1, le=256)
    seq_len: int | None = Field(None, ge=8, le=4096)
    batch_size: int | None = Field(None, ge=1, le=256)
    eval_every: int | None = Field(None, ge=1, le=10_000)
    learning_rate: float | None = Field(None, gt=0, lt=1)


@dataclass
class AdapterJob:
    id: int
    project_id: int
    project: str
    model: str  # the name the adapter is registered and served under
    folder: str
    state: JobState = "running"
    message: str = "starting"
    step: int = 0
    steps: int = 0
    loss: float | None = None
    heldout_perplexity: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None
    result: dict[str, Any] | None = None  # the report: perplexities and style distances
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def view(self) -> dict[str, Any]:
        with _lock:
            data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cancel"}
        data["object"] = "adapter_job"
        data["elapsed_seconds"] = round((self.finished or time.time()) - self.started, 1)
        return data


@dataclass
class AdapterJobs:
    """The jobs of one server (its app state)."""

    jobs: dict[int, AdapterJob] = field(default_factory=dict)

    def active(self) -> AdapterJob | None:
        return next((j for j in self.jobs.values() if j.state in ACTIVE), None)


def jobs_of(request: Request) -> AdapterJobs:
    with _lock:
        jobs: AdapterJobs | None = getattr(request.app.state, "adapter_jobs", None)
        if jobs is None:
            jobs = request.app.state.adapter_jobs = AdapterJobs()
        return jobs


@router.post("/projects/{project_id}/adapter", status_code=202)
def start_job(
    project_id: int, request: Request, body: AdapterJobRequest | None = None
) -> dict[str, Any]:
    from musegpt.adapters.works import project_paragraphs, works_model_name, works_settings

    state = state_of(request)
    if state.store is None:
        raise APIError(404, "this server has no works library", None, "no_works_library")
    try:
        name, paragraphs = project_paragraphs(state.store, str(project_id))
    except ValueError as err:
        status = 404 if str(err).startswith("no project") else 400
        raise APIError(
            status,
            str(err),
            "project_id",
            "too_little_text" if status == 400 else "project_not_found",
        ) from None
    try:
        settings = works_settings(**(body.model_dump() if body else {}))
    except ValueError as err:
        raise invalid(str(err)) from None
    jobs = jobs_of(request)
    with _lock:
        running = jobs.active()
        if running is not None:
            raise APIError(
                429,
                f"an adapter is already training (job {running.id}, project {running.project!r}):"
                f" wait for it, or cancel it (DELETE /v1/adapter-jobs/{running.id})",
                None,
                "adapter_job_running",
            )
        job_id = max(jobs.jobs, default=0) + 1
        model = works_model_name(name)
        folder = (
            state.settings.data_dir
            / RUNS_FOLDER
            / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}-{job_id}"
        )
        job = AdapterJob(job_id, project_id, name, model, str(folder), steps=settings.steps)
        jobs.jobs[job_id] = job
    folder.mkdir(parents=True, exist_ok=True)
    record = {"model": model, "project": name, "project_id": project_id, "base": BASE_MODEL}
    atomic_write_text(folder / JOB_FILE, json.dumps(record, ensure_ascii=False) + "\n")
    thread = threading.Thread(
        target=_run,
        args=(job, paragraphs, settings, state),
        name=f"adapter-job-{job_id}",
        daemon=True,
    )
    thread.start()
    return job.view()


@router.get("/adapter-jobs")
def list_jobs(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [j.view() for j in jobs_of(request).jobs.values()]}


@router.get("/adapter-jobs/{job_id}")
def get_job(job_id: int, request: Request) -> dict[str, Any]:
    return _job(request, job_id).view()


@router.delete("/adapter-jobs/{job_id}")
def cancel_job(job_id: int, request: Request) -> dict[str, Any]:
    job = _job(request, job_id)
    with _lock:
        if job.state == "running":
            job.state = "cancelling"
            job.message = "cancelling: the trainer stops before its next step"
            job.cancel.set()
    return job.view()


def _job(request: Request, job_id: int) -> AdapterJob:
    job = jobs_of(request).jobs.get(job_id)
    if job is None:
        raise APIError(404, f"no adapter job {job_id}", "job_id", "job_not_found")
    return job


def _run(job: AdapterJob, paragraphs: list[str], settings: Any, state: ServerState) -> None:
    """The job's thread: train, convert, measure, register, serve."""
    from musegpt.adapters.pipeline import finetune_gguf
    from musegpt.adapters.registry import add_adapter
    from musegpt.adapters.train import TrainingCancelled, TrainingProgress
    from musegpt.adapters.works import write_works
    from musegpt.engines.registry import open_engine

    def say(line: str) -> None:
        with _lock:
            job.message = line

    def progress(news: TrainingProgress) -> None:
        with _lock:
            job.step, job.steps, job.loss = news.step, news.steps, news.loss
            job.heldout_perplexity = news.heldout_perplexity
            job.tokens_per_second = news.tokens_per_second
            job.eta_seconds = news.eta_seconds

    outcome: JobState = "done"
    error: str | None = None
    try:
        folder = Path(job.folder)
        data = write_works(paragraphs, folder)
        report = finetune_gguf(
            BASE_MODEL, data, folder, settings, report=say, progress=progress,
            should_stop=job.cancel.is_set,
        )  # fmt: skip
        say(f"registering {job.model}")
        add_adapter(job.model, BASE_MODEL, report.adapter)
        host = state.models.add(job.model, lambda: open_engine(job.model))
        state.metrics.gauges[job.model] = host.stats
        result = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(report).items()}
        with _lock:
            job.result = {**result, "improvement": report.improvement}
            job.message = (
                f"{job.model} is ready in the model menu: held-out perplexity "
                f"{report.base_perplexity:.1f} → {report.adapted_perplexity:.1f}"
            )
    except TrainingCancelled as err:
        outcome, error = "cancelled", None
        say(f"cancelled after step {err.step}; the checkpoint is kept in {job.folder}")
    except Exception as err:  # any failure is the job's state, shown where its button is
        outcome, error = "failed", str(err) or type(err).__name__
    with _lock:
        job.state, job.error, job.finished = outcome, error, time.time()
        if error:
            job.message = f"failed: {error}"


def restore_adapters(state: ServerState) -> list[str]:
    """Serve again every adapter a job finished in this data folder (the latest run of each
    model): registered anew and loaded with the other models. A run folder that is not
    usable (no model name, an adapter file that is not one) is skipped with a warning."""
    from musegpt.adapters.pipeline import ADAPTER_FILE, REPORT_FILE
    from musegpt.adapters.registry import add_adapter
    from musegpt.engines.base import EngineError
    from musegpt.engines.registry import open_engine

    runs = state.settings.data_dir / RUNS_FOLDER
    finished = sorted(
        (f for f in runs.glob("*/") if (f / REPORT_FILE).is_file()),
        key=lambda f: (f / REPORT_FILE).stat().st_mtime,
    )
    latest: dict[str, Path] = {}
    for folder in finished:  # oldest first: a later run of a model replaces an earlier one
        try:
            latest[_served_name(folder)] = folder
        except ValueError as err:
            log.warning("adapter run %s is not served: %s", folder, err)
    restored = []
    for model, folder in latest.items():
        try:
            add_adapter(model, BASE_MODEL, folder / ADAPTER_FILE)
        except (EngineError, OSError) as err:
            log.warning("adapter run %s is not served: %s", folder, err)
            continue
        state.models.include(model, partial(open_engine, model))
        restored.append(model)
    return restored


def _served_name(folder: Path) -> str:
    """The model a finished run is served as: its job.json's, else its folder name's."""
    file = folder / JOB_FILE
    if file.is_file():
        try:
            model = json.loads(file.read_text(encoding="utf-8"))["model"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{file} is unreadable ({err})") from None
        if isinstance(model, str) and model:
            return model
        raise ValueError(f"{file} names no model")
    match = RUN_NAME.fullmatch(folder.name)
    if match is None:
        raise ValueError(f"no {JOB_FILE} and the folder name names no works-PROJECT model")
    return match["model"]
