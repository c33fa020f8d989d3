"""`create_app`: the server, assembled from its parts. Models, settings and the works
library are passed in, so tests inject small real models and a temporary library."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from musegpt.engines.base import NoCopyIndex
from musegpt.engines.remote import RemoteError
from musegpt.server import (
    adapter_jobs_api,
    images_api,
    moderation_api,
    music_api,
    openai_api,
    story_api,
    studio_api,
    tokenize_api,
    works_api,
)
from musegpt.server.errors import APIError, from_validation, invalid
from musegpt.server.guard import Guard
from musegpt.server.hosts import EngineSource, Models
from musegpt.server.metrics import CONTENT_TYPE
from musegpt.server.settings import ServerSettings
from musegpt.server.state import ServerState, state_of
from musegpt.store.works import WorksStore

STATIC = Path(__file__).resolve().parent / "static"


def create_app(
    engines: Mapping[str, EngineSource],
    settings: ServerSettings | None = None,
    store: WorksStore | None = None,
) -> FastAPI:
    """The MuseGPT server for `engines` (name -> engine or loader; the first is the
    default), with `store` as its works library (None: the works endpoints answer 404)."""
    settings = settings or ServerSettings()
    models = Models(engines, settings.max_queue, settings.max_batch_rows)
    state = ServerState(models, settings, store)
    adapter_jobs_api.restore_adapters(state)  # adapters trained here before a restart
    for name, host in models.hosts.items():
        state.metrics.gauges[name] = host.stats

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        models.load_all()
        moderation_api.prepare(settings)
        yield

    app = FastAPI(title="MuseGPT", version="0.1.0", lifespan=lifespan)
    app.state.musegpt = state
    _errors(app)
    app.include_router(openai_api.router)
    app.include_router(studio_api.router)
    app.include_router(works_api.router)
    app.include_router(story_api.router)
    app.include_router(music_api.router)
    app.include_router(tokenize_api.router)
    app.include_router(moderation_api.router)
    app.include_router(images_api.router)
    app.include_router(adapter_jobs_api.router)
    _service_routes(app)
    app.add_middleware(Guard, settings=settings, metrics=state.metrics)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        # Added last, so it runs first: a browser's preflight is answered before the key
        # check (a preflight never carries the key), and every answer, a 401 included,
        # carries the allow-origin header the browser needs to read it.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, err: APIError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RemoteError)
    async def remote_failed(request: Request, err: RemoteError) -> JSONResponse:
        # The model's own server failed (502), or the request needs what it cannot do (400).
        return APIError(err.status, str(err), None, "remote_model_failed").response()

    @app.exception_handler(NoCopyIndex)
    async def no_copy_index(request: Request, err: NoCopyIndex) -> JSONResponse:
        return invalid(str(err), "max_copy").response()

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        return from_validation(list(err.errors())).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        # Never 409: the 0.x openai client retries it forever.
        status = 400 if err.status_code == 409 else err.status_code
        return APIError(status, str(err.detail)).response(getattr(err, "headers", None))


def _service_routes(app: FastAPI) -> None:
    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        state = state_of(request)
        models = {
            name: "ready" if h.runner else ("failed" if h.error else "loading")
            for name, h in state.models.hosts.items()
        }
        return {"status": "ok", "models": models}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics(request: Request) -> Response:
        return Response(state_of(request).metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    if state_of_settings(app).studio_web:
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        def index() -> RedirectResponse:
            return RedirectResponse("/static/index.html")


def state_of_settings(app: FastAPI) -> ServerSettings:
    state: ServerState = app.state.musegpt
    return state.settings
