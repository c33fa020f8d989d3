"""`musegpt serve`: the OpenAI-compatible API, the works library and the web studio."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, cast

import typer

from musegpt.cli.errors import err_console, user_errors

if TYPE_CHECKING:
    from musegpt.engines.base import Engine

SHUTDOWN_GRACE_S = 3  # seconds in-flight requests get to finish once asked to stop


def serve_command(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="A model name or path to serve (repeat for more; "
            "the first is the default). Default: the embedded model.",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="A key clients must send (repeatable). Also read from "
            "$MUSEGPT_API_KEY. None: no key needed.",
        ),
    ] = None,
    works: Annotated[
        Path, typer.Option(help="The works library (SQLite file) the studio saves into.")
    ] = Path("musegpt-works/works.db"),
    contexts: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="llama.cpp / transformers: contexts in the pool "
            "(each holds its own copy of the model).",
        ),
    ] = 1,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per completion.")] = 2048,
    max_prompt_tokens: Annotated[int, typer.Option(min=1, help="Longest prompt.")] = 8192,
    max_n: Annotated[int, typer.Option(min=1, help="Most completions per request.")] = 8,
    max_queue: Annotated[int, typer.Option(min=0, help="Waiting requests before 429.")] = 64,
    max_body: Annotated[int, typer.Option(min=1024, help="Largest request body in bytes.")] = (
        1_000_000
    ),
    timeout: Annotated[float, typer.Option(min=1, help="Seconds a request may take.")] = 600.0,
    cors: Annotated[
        list[str] | None, typer.Option(help="An origin allowed by CORS (repeatable); none: off.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, mps (MuseGPT / HF models).")] = "cpu",
    music: Annotated[
        bool,
        typer.Option(
            help="Also serve the packaged ABC model (abc-folk) for /v1/music and the "
            "studio's music panel."
        ),
    ] = True,
    moderation: Annotated[
        str,
        typer.Option(
            help="off; flag: record each studio generation's moderation in its provenance; "
            "block: refuse flagged prompts (400) and steer or withhold flagged output."
        ),
    ] = "off",
) -> None:
    """Serve models over an OpenAI-compatible HTTP API, with the web studio at /."""
    with user_errors():
        import uvicorn

        from musegpt.music.compose import MUSIC_MODEL
        from musegpt.server import ServerSettings, create_app
        from musegpt.server.settings import API_KEY_ENV
        from musegpt.store import WorksStore

        keys = list(api_key or [])
        if os.environ.get(API_KEY_ENV):
            keys.append(os.environ[API_KEY_ENV])
        settings = ServerSettings(
            api_keys=tuple(keys),
            max_body_bytes=max_body,
            max_prompt_tokens=max_prompt_tokens,
            max_tokens=max_tokens,
            max_n=max_n,
            max_queue=max_queue,
            request_timeout_s=timeout,
            cors_origins=tuple(cors or []),
            data_dir=works.parent,
            moderation=_moderation_mode(moderation),
        )
        names: list[str | None] = list(model) if model else [None]
        sources = {_name(m): _loader(m, contexts, device) for m in names}
        if music and MUSIC_MODEL not in sources:
            sources[MUSIC_MODEL] = _loader(MUSIC_MODEL, 1, device)
        app = create_app(sources, settings, WorksStore(works))
        where = f"http://{host}:{port}"
        err_console.print(f"MuseGPT serving {', '.join(sources)} at {where} (studio: {where}/)")
        # On SIGTERM or Ctrl-C, requests still running after the grace are cancelled (their
        # decodes stop within a step), so the server is gone within seconds.
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )


def _moderation_mode(mode: str) -> Literal["off", "flag", "block"]:
    if mode not in ("off", "flag", "block"):
        raise ValueError(f"--moderation takes off, flag or block (got {mode!r})")
    return cast(Literal["off", "flag", "block"], mode)


def _name(model: str | None) -> str:
    from musegpt.engines.registry import find_model

    return find_model(model).name


def _loader(model: str | None, contexts: int, device: str) -> Callable[[], list[Engine]]:
    """Load in the background, so the server answers (503, "loading") at once."""

    def load() -> list[Engine]:
        from musegpt.engines.registry import open_engine

        first = open_engine(model, device=device)
        if first.max_batch is None:
            return [first]  # batched in one forward pass: one copy serves everyone
        return [first] + [open_engine(model, device=device) for _ in range(contexts - 1)]

    return load
