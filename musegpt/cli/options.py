"""Options several commands share, declared once (typer reads them from the signatures)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

Opt = typer.Option

ModelOpt = Annotated[
    str | None,
    Opt("--model", "-m", help="A model name (`musegpt models`) or path; default: gemma3-270m."),
]
SeedOpt = Annotated[int | None, Opt(help="Same seed, same text.")]
TemperatureOpt = Annotated[float | None, Opt(help="Randomness; 0 = greedy.")]
TopPOpt = Annotated[float | None, Opt(help="Nucleus sampling mass; 1 = off.")]
TopKOpt = Annotated[int | None, Opt(help="Keep the k likeliest tokens; 0 = all.")]
RepetitionOpt = Annotated[float | None, Opt(help="CTRL penalty on seen tokens; 1 = off.")]
MaxTokensOpt = Annotated[int | None, Opt("--max-tokens", help="Tokens per model call at most.")]
LangOpt = Annotated[str | None, Opt(help="en or zh; detected from the input when left out.")]
OutOpt = Annotated[Path | None, Opt("--out", "-o", help="Also write the result as Markdown here.")]


def chosen(**options: object) -> dict[str, object]:
    """The options the user actually gave (None = not given), by SamplingParams field name."""
    renamed = {"max_tokens": "max_new_tokens"}
    return {renamed.get(k, k): v for k, v in options.items() if v is not None}


# Control characters other than tab and line ends: a binary file, not text.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def read_text_input(file: Path) -> str:
    """A text a command is given as a file, or (`-`) on standard input: UTF-8 plain text,
    else a ValueError that says which input is wrong."""
    if str(file) == "-":
        return _plain_text(typer.get_binary_stream("stdin").read(), "standard input")
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist")
    if not file.is_file():
        raise ValueError(f"{file} is not a file")
    return _plain_text(file.read_bytes(), str(file))


def _plain_text(data: bytes, source: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{source} is not UTF-8 text") from None
    if CONTROL.search(text):
        raise ValueError(f"{source} holds control characters: it is not plain text")
    return text
