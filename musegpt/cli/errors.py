"""Turning expected failures into one clear line and exit code 2, never a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console

T = TypeVar("T")
err_console = Console(stderr=True)

# Errors that mean "your input is wrong": a missing file, a bad value, a damaged model.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, OSError, KeyError)

# Model fields that commands take under another name (`--max-tokens` sets max_new_tokens).
OPTION_NAMES = {
    "max_new_tokens": ("max_tokens", "max_new_tokens"),
    "banned": ("ban",),
    "banned_regex": ("ban_regex",),
    "n": ("num_samples",),
    "text": (),  # the command's first argument: the topic, premise, subject or passage
}
BOUNDS = {"ge": "at least {}", "gt": "greater than {}", "le": "at most {}", "lt": "less than {}"}


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except ValidationError as err:  # before ValueError, which it is: pydantic's text is long
        fail(validation_message(err))
    except USER_ERRORS as err:
        fail(str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err))


def fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2) from None


def run_reporting_errors(fn: Callable[[], T]) -> T:
    with user_errors():
        return fn()


def _option(field: str) -> str:
    """How the running command spells the option (or argument) that sets `field`."""
    context = _current_context()
    names = OPTION_NAMES.get(field, (field,))
    for param in [] if context is None else context.command.params:
        is_option = param.param_type_name == "option"
        if param.name in names and is_option:
            return str(max(param.opts, key=len))
        if param.name in names or (not names and not is_option):
            return str(param.name).upper()  # an argument, shown as usage shows it
    return field  # not an option of this command (e.g. a setting read from a file)


def _current_context() -> Any:
    """The running command's click context (typer 0.2x bundles its own click)."""
    try:
        from typer._click import globals as click_globals
    except ImportError:  # older typer: the click package
        import click as click_globals  # type: ignore[no-redef]
    return click_globals.get_current_context(silent=True)


def _model_range(err: ValidationError, field: str) -> str:
    """The allowed range of `field`, from the model's own declaration: "at least 0 and at
    most 1". Empty when the field has no bounds (or the model is not one of ours)."""
    from musegpt.generation.params import SamplingParams
    from musegpt.studio.registry import TASKS

    models: list[type[BaseModel]] = [SamplingParams, *(spec.request for spec in TASKS.values())]
    model = next((m for m in models if m.__name__ == err.title), None)
    info = None if model is None else model.model_fields.get(field)
    bounds = []
    for constraint in [] if info is None else info.metadata:
        for key, phrase in BOUNDS.items():
            value = getattr(constraint, key, None)
            if value is not None:
                bounds.append(phrase.format(_number(value)))
    return " and ".join(bounds)


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def validation_message(err: ValidationError) -> str:
    """One line naming the option and what it accepts, e.g. "--top-p must be greater than 0
    and at most 1 (got 2.0)", instead of pydantic's report with its URL."""
    first = err.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    kind = first["type"]
    if not loc:  # a check of several fields together: its own message says it all
        return str(first.get("ctx", {}).get("error", first["msg"]))
    option = _option(loc[0])
    got = first.get("input")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        allowed = _model_range(err, loc[0]) or first["msg"].removeprefix("Input should be ")
        return f"{option} must be {allowed} (got {_number(got)})"
    if kind == "literal_error":
        return f"{option} must be {first['ctx']['expected']} (got {got!r})"
    if kind == "value_error":
        return f"{option}: {first['ctx']['error']}"
    return f"{option}: {first['msg']} (got {got!r})"
