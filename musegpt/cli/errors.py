"""Turning expected failures into one clear line and exit code 2, never a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from rich.console import Console

T = TypeVar("T")
err_console = Console(stderr=True)

# Errors that mean "your input is wrong": a missing file, a bad value, a damaged model.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, OSError, KeyError)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
        raise typer.Exit(code=2) from None


def run_reporting_errors(fn: Callable[[], T]) -> T:
    with user_errors():
        return fn()
