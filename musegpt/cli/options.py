"""Options several commands share, declared once (typer reads them from the signatures)."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

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


def chosen(samplers: Mapping[str, object] | None = None, **options: object) -> dict[str, object]:
    """The options the user actually gave (None = not given), by SamplingParams field name,
    with the `samplers` a `sampler_options` command received."""
    renamed = {"max_tokens": "max_new_tokens"}
    given = {renamed.get(k, k): v for k, v in options.items() if v is not None}
    return {**given, **(samplers or {})}


# llama.cpp's samplers, as `--dry-multiplier` and the like on every command that writes.
SAMPLER_FIELDS = (
    "repeat_last_n", "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
    "dry_sequence_breakers", "xtc_probability", "xtc_threshold", "mirostat", "mirostat_tau",
    "mirostat_eta", "dynatemp_range", "dynatemp_exponent", "top_n_sigma", "max_copy",
)  # fmt: skip
Samplers = dict[str, object] | None  # what a `sampler_options` command receives
SAMPLER_PANEL = "Samplers (llama.cpp's names; docs/sampling.md)"
Command = TypeVar("Command", bound=Callable[..., Any])


def _sampler_parameter(name: str) -> inspect.Parameter:
    from musegpt.generation.params import SamplingParams

    info = SamplingParams.model_fields[name]
    default = info.get_default(call_default_factory=True)
    shown = default if not isinstance(default, list) else " ".join(map(repr, default))
    help_text = f"{info.description} [default: {shown}]"
    if name == "dry_sequence_breakers":  # one breaker per option, repeatable
        option = Opt("--dry-sequence-breaker", help=help_text + "; repeatable.")
        annotation: Any = Annotated[list[str] | None, option]
    else:
        option = Opt(help=help_text, show_default=False)
        annotation = Annotated[info.annotation | None, option]  # type: ignore[operator]
    option.rich_help_panel = SAMPLER_PANEL
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def sampler_options(command: Command) -> Command:
    """Give a typer command the sampler options (declared here, once). The command takes a
    `samplers` keyword: the SamplingParams fields the user set, for `chosen`."""
    signature = inspect.signature(command, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.name != "samplers"]

    @functools.wraps(command)
    def with_samplers(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name, None) for name in SAMPLER_FIELDS}
        samplers = {k: v for k, v in values.items() if v is not None and v != []}
        return command(*args, samplers=samplers, **kwargs)

    added = [_sampler_parameter(name) for name in SAMPLER_FIELDS]
    new_signature = signature.replace(parameters=[*kept, *added])
    with_samplers.__signature__ = new_signature  # type: ignore[attr-defined]  # typer reads it
    return with_samplers  # type: ignore[return-value]


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
