"""`musegpt write TASK ...`: the studio tasks from the terminal, streaming as they write."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from musegpt.cli.errors import err_console, user_errors
from musegpt.cli.options import (
    LangOpt,
    MaxTokensOpt,
    ModelOpt,
    Opt,
    OutOpt,
    RepetitionOpt,
    Samplers,
    SeedOpt,
    TemperatureOpt,
    TopKOpt,
    TopPOpt,
    chosen,
    read_text_input,
    sampler_options,
)

if TYPE_CHECKING:
    from musegpt.studio import Studio, Work

write_app = typer.Typer(
    help="Write with the studio: story, script, lyrics, brainstorm, describe, rewrite, "
    "plot-help, poem (English or Chinese).",
    no_args_is_help=True,
)


def _sink(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _studio(model: str | None, lang: str | None, sampling: dict[str, Any]) -> Studio:
    from musegpt.generation.params import SamplingParams
    from musegpt.studio import Studio

    if lang not in (None, "en", "zh"):
        raise ValueError(f"--lang must be en or zh (got {lang!r})")
    params = SamplingParams(**sampling)
    with err_console.status(f"Loading {model or 'the default model'}…"):
        from musegpt.engines.registry import open_engine

        engine = open_engine(model)

    def status(message: str) -> None:
        err_console.print(f"[dim]{message}[/]", highlight=False, soft_wrap=True)

    return Studio(engine, params, lang, _sink, status)  # type: ignore[arg-type]


def _finish(work: Work, out: Path | None) -> None:
    _sink("\n")
    if out is not None:
        work.save(out)
        err_console.print(f"[green]saved[/] {out}", highlight=False)


def _write(
    task: str, fields: dict[str, Any], model: str | None, lang: str | None,
    sampling: dict[str, Any], out: Path | None,
) -> Work:  # fmt: skip
    """Check the request (before the model loads), run the task, stream and save it."""
    from musegpt.studio.registry import PoemRequest, task_request, task_spec

    request = task_request(task, {k: v for k, v in fields.items() if v is not None})
    studio = _studio(model, lang, sampling)
    work = task_spec(task).perform(studio, request)
    if task == "story":
        err_console.print(f"[dim]project: {work.meta['project']}[/]", highlight=False)
    if isinstance(request, PoemRequest):
        from musegpt.cli.form import render_report
        from musegpt.forms import check

        render_report(check(work.text, request.chosen_form()), err_console)
    _finish(work, out)
    return work


@write_app.command("story")
@sampler_options
def story_command(
    premise: Annotated[str, typer.Argument(help="What the story is about.")] = "",
    project: Annotated[Path | None, Opt(help="Story folder (default: stories/<premise>).")] = None,
    chapters: Annotated[int | None, Opt(help="Chapters to plan for a new story [default: 3].")] = (
        None
    ),
    more: Annotated[int | None, Opt(help="Chapters to add to an existing story.")] = None,
    chapter_tokens: Annotated[int | None, Opt(help="Tokens per chapter [default: 450].")] = None,
    steps: Annotated[
        bool, Opt(help="Tell each chapter in steps drawn from its beat (new stories; slower).")
    ] = False,
    continue_file: Annotated[
        Path | None, Opt("--continue", help="Continue the text in this file instead.")
    ] = None,
    model: ModelOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    top_k: TopKOpt = None,
    repetition_penalty: RepetitionOpt = None,
    max_tokens: MaxTokensOpt = None,
    out: OutOpt = None,
    samplers: Samplers = None,
) -> None:
    """A story from a premise — bible, outline, chapters — saved as a project folder you can
    resume and extend (--more); or --continue a text."""
    with user_errors():
        sampling = chosen(samplers, seed=seed, temperature=temperature, top_p=top_p, top_k=top_k,
                          repetition_penalty=repetition_penalty, max_tokens=max_tokens)  # fmt: skip
        if continue_file is not None:
            text = read_text_input(continue_file)
            if not text.strip():
                raise ValueError(f"{continue_file} is empty: there is nothing to continue")
            _sink(text.rstrip() + " ")
            fields: dict[str, Any] = {"text": text, "max_tokens": max_tokens}
            _write("continue", fields, model, lang, sampling, out)
            return
        fields = {"text": premise, "project": project, "chapters": chapters, "more": more,
                  "chapter_tokens": chapter_tokens, "steps": steps or None}  # fmt: skip
        _write("story", fields, model, lang, sampling, out)


@write_app.command("script")
@sampler_options
def script_command(
    situation: Annotated[str, typer.Argument(help="What happens in the scene.")],
    title: Annotated[str, Opt(help="The script's title.")] = "",
    adapter: Annotated[
        str | None,
        Opt(help="Default model: auto or none (no adapter), stage (Shakespeare), or a name."),
    ] = None,
    model: ModelOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    out: OutOpt = None,
    samplers: Samplers = None,
) -> None:
    """A screenplay scene in Fountain format."""
    with user_errors():
        sampling = chosen(samplers, seed=seed, temperature=temperature, top_p=top_p)
        fields = {"text": situation, "title": title, "adapter": adapter}
        _write("script", fields, model, lang, sampling, out)


@write_app.command("lyrics")
@sampler_options
def lyrics_command(
    topic: Annotated[str, typer.Argument(help="What the song is about.")],
    title: Annotated[str, Opt(help="The song's title.")] = "",
    model: ModelOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    out: OutOpt = None,
    samplers: Samplers = None,
) -> None:
    """Song lyrics: verses, a repeated chorus and a bridge, labelled."""
    with user_errors():
        sampling = chosen(samplers, seed=seed, temperature=temperature, top_p=top_p)
        _write("lyrics", {"text": topic, "title": title}, model, lang, sampling, out)


@write_app.command("brainstorm")
@sampler_options
def brainstorm_command(
    topic: Annotated[str, typer.Argument(help="What the ideas are for.")],
    kind: Annotated[str, Opt(help="titles, names, plot twists, settings, design concepts…")] = (
        "ideas"
    ),
    count: Annotated[int | None, Opt("--count", "-n", help="How many ideas [default: 8].")] = (
        None
    ),
    model: ModelOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    out: OutOpt = None,
    samplers: Samplers = None,
) -> None:
    """N distinct ideas of a kind (near-duplicates are dropped until N remain)."""
    with user_errors():
        sampling = chosen(samplers, seed=seed, temperature=temperature, top_p=top_p)
        fields = {"text": topic, "kind": kind, "count": count}
        _write("brainstorm", fields, model, lang, sampling, out)


@write_app.command("describe")
@sampler_options
def describe_command(
    subject: Annotated[str, typer.Argument(help="A thing, person or place.")],
    model: ModelOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    max_tokens: MaxTokensOpt = None,
    out: OutOpt = None,
    samplers: Samplers = None,
) -> None:
    """A sensory description."""
    with user_errors():
        sampling = chosen(
            samplers, seed=seed, temperature=temperature, top_p=top_p, max_tokens=max_tokens
        )
        _write("describe", {"text": subject}, model, lang, sampling, out)


@write_app.command("rewrite")
@sampler_options
def rewrite_command(
    text: Annotated[str, typer.Argument(help="The passage, or @FILE to read it from a file.")],
    style: Annotated[str, Opt(help="A style or tone: noir, Shakespearean, cheerful…")] = "",
    sample: Annotated[Path | None, Opt(help="A file whose style to imitate.")] = None,
    alternatives: Annotated[
        int | None, Opt("--alternatives", "-n", help="How many versions [default: 1].")
    ] = None,
    model: ModelOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    out: OutOpt = None,
    samplers: Samplers = None,
) -> None:
    """A passage in another style or tone (or after a style sample), meaning kept."""
    with user_errors():
        sample_text = read_text_input(sample) if sample else ""
        sampling = chosen(samplers, seed=seed, temperature=temperature, top_p=top_p)
        fields = {"text": _text_arg(text), "style": style, "sample": sample_text,
                  "alternatives": alternatives}  # fmt: skip
        _write("rewrite", fields, model, lang, sampling, out)


@write_app.command("plot-help")
@sampler_options
def plot_help_command(
    story: Annotated[str, typer.Argument(help="The story so far, or @FILE.")],
    conflict: Annotated[str, Opt(help="Where you are stuck.")],
    count: Annotated[int | None, Opt("--count", "-n", help="How many ways [default: 4].")] = None,
    model: ModelOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    out: OutOpt = None,
    samplers: Samplers = None,
) -> None:
    """Several distinct ways forward when a plot is stuck."""
    with user_errors():
        sampling = chosen(samplers, seed=seed, temperature=temperature, top_p=top_p)
        fields = {"text": _text_arg(story), "conflict": conflict, "count": count}
        _write("plot-help", fields, model, lang, sampling, out)


def _text_arg(value: str) -> str:
    """`@FILE` reads the text from a file; anything else is the text itself."""
    if value.startswith("@"):
        return read_text_input(Path(value[1:]))
    return value


@write_app.command("poem")
@sampler_options
def poem_command(
    topic: Annotated[str, typer.Argument(help="What the poem is about.")],
    form: Annotated[
        str, Opt(help="haiku, limerick, sonnet, quatrain:ABAB, 五言绝句… (`musegpt form list`)")
    ] = "haiku",
    rhymes: Annotated[str | None, Opt(help="Chinese rhyme book: pingshui or xinyun.")] = None,
    strict: Annotated[
        bool | None, Opt("--strict/--lenient", help="Enforce tones (Chinese).")
    ] = None,
    attempts: Annotated[int | None, Opt(help="Tries before giving up [default: 5].")] = None,
    adapter: Annotated[
        str | None,
        Opt(help="Default model: auto (Chinese: the tang adapter), none, or an adapter's name."),
    ] = None,
    model: ModelOpt = None,
    seed: SeedOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    out: OutOpt = None,
    samplers: Samplers = None,
) -> None:
    """A poem in an exact form: it passes the form's checker, or fails with the reasons."""
    with user_errors():
        fields = {"text": topic, "form": form, "rhymes": rhymes, "strict": strict,
                  "attempts": attempts, "adapter": adapter}  # fmt: skip
        sampling = chosen(samplers, seed=seed, temperature=temperature, top_p=top_p)
        _write("poem", fields, model, None, sampling, out)
