"""`musegpt models`: what can be written with, and registering more."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from musegpt.cli.errors import err_console, user_errors

models_app = typer.Typer(help="List, register and remove models.", invoke_without_command=True)


@models_app.callback()
def list_command(ctx: typer.Context) -> None:
    """List the models: the default, packaged ones, ./runs, and registered paths."""
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        from musegpt.engines.registry import list_models

        table = Table("name", "backend", "source", "path")
        entries = list_models()
        for entry in entries:
            table.add_row(entry.name, entry.backend, entry.source, entry.path or "(built in)")
        Console().print(table)
        if any(entry.name == "icons" for entry in entries):  # the packaged image model
            from musegpt.images.corpus import icons_credits

            typer.echo(f"icons was trained on the {icons_credits()}")


@models_app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(help="The name to use with --model.")],
    path: Annotated[
        Path | None, typer.Argument(help="A .gguf file, a MuseGPT model or a HF folder.")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Another server's OpenAI API, e.g. http://host:8000/v1.")
    ] = None,
    remote_model: Annotated[
        str | None, typer.Option(help="The model's id on that server (with --url).")
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="The environment variable with its API key (--url).")
    ] = None,
    context_length: Annotated[
        int | None, typer.Option(help="Its context in tokens if the server does not say.")
    ] = None,
    base: Annotated[
        str | None, typer.Option(help="A GGUF model (e.g. gemma3-270m) to apply --adapter to.")
    ] = None,
    adapter: Annotated[
        Path | None, typer.Option(help="A GGUF LoRA file (musegpt finetune ... --lora).")
    ] = None,
    scale: Annotated[float, typer.Option(help="The adapter's strength (with --adapter).")] = 1.0,
) -> None:
    """Register a model under a name: a local PATH, a model on another server (--url), or a
    GGUF model with a LoRA adapter (--base, --adapter)."""
    with user_errors():
        from musegpt.engines.registry import add_model, add_remote_model

        if base is not None or adapter is not None:  # musegpt/adapters/registry.py
            from musegpt.adapters.registry import add_adapter

            if base is None or adapter is None or path is not None or url is not None:
                raise ValueError("an adapter model takes --base and --adapter, no PATH or --url")
            added = add_adapter(name, base, adapter, scale)
            err_console.print(f"registered [bold]{added.name}[/]: {added.base} + {added.adapter}")
            return
        if url is None and remote_model is None:
            if path is None:
                raise ValueError("give a PATH to register, or --url and --remote-model")
            entry = add_model(name, path)
        elif path is not None or url is None or remote_model is None:
            raise ValueError(
                "a remote model takes --url and --remote-model (its id there; GET URL/models "
                "lists them) and no PATH"
            )
        else:
            entry = add_remote_model(name, url, remote_model, api_key_env, context_length)
        err_console.print(f"registered [bold]{entry.name}[/] ({entry.backend}): {entry.path}")


@models_app.command("remove")
def remove_command(name: Annotated[str, typer.Argument(help="A registered name.")]) -> None:
    """Forget a registered model (its files are left alone)."""
    with user_errors():
        from musegpt.engines.registry import remove_model

        remove_model(name)
        err_console.print(f"removed {name}")
