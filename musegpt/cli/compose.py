"""`musegpt compose`: a tune in ABC notation, and optionally MIDI, WAV and an SVG score."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from musegpt.cli.errors import err_console, user_errors
from musegpt.cli.options import Opt, Samplers, SeedOpt, sampler_options


@sampler_options
def compose_command(
    request: Annotated[str, typer.Argument(help='What to write, e.g. "a lively jig in D major".')],
    bars: Annotated[int, Opt(min=1, max=128, help="Bars in the tune.")] = 16,
    out: Annotated[
        Path | None, Opt("--out", "-o", help="Write the ABC here (MIDI, WAV, SVG beside it).")
    ] = None,
    midi: Annotated[bool, Opt("--midi", help="Also write a MIDI file (music21).")] = False,
    wav: Annotated[bool, Opt("--wav", help="Also render WAV (fluidsynth + GM SoundFont).")] = False,
    svg: Annotated[bool, Opt("--svg", help="Also engrave the score as SVG (abcm2ps).")] = False,
    model: Annotated[
        str | None, Opt("--model", "-m", help="A model name or path; default: abc-folk.")
    ] = None,
    seed: SeedOpt = None,
    temperature: Annotated[float, Opt(help="Randomness; 0 = greedy.")] = 0.8,
    top_p: Annotated[float, Opt(help="Nucleus sampling mass; 1 = off.")] = 0.95,
    title: Annotated[str | None, Opt(help="The T: field (default: words of the request).")] = None,
    unconstrained: Annotated[
        bool, Opt("--unconstrained", help="Let the model write freely (no ABC grammar).")
    ] = False,
    samplers: Samplers = None,
) -> None:
    """Compose a tune: the request sets rhythm, metre and key (jig -> 6/8, reel -> 4/4,
    waltz -> 3/4; "in D major" -> K:D), the model writes the body."""
    with user_errors():
        from musegpt.music.compose import compose, music_engine
        from musegpt.music.tune import MissingToolError

        if (midi or wav or svg) and out is None:
            raise ValueError("--midi, --wav and --svg need --out FILE.abc to name the files")
        engine = music_engine(model)
        tune = compose(
            request, bars, seed, engine, not unconstrained, temperature, top_p, title, samplers
        )  # fmt: skip
        typer.echo(tune.abc, nl=False)
        if out is None:
            return
        written = [tune.save(out)]
        if midi:
            written.append(tune.to_midi(out.with_suffix(".mid")))
        for wanted, convert, suffix in ((wav, tune.to_wav, ".wav"), (svg, tune.to_svg, ".svg")):
            if not wanted:
                continue
            try:
                written.append(convert(out.with_suffix(suffix)))
            except MissingToolError as err:  # the rest is still worth keeping
                err_console.print(f"[yellow]skipped {suffix[1:].upper()}:[/] {err}")
        for path in written:
            err_console.print(f"[green]saved[/] {path}")
