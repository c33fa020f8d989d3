"""`musegpt form check FILE --form NAME`: does a poem keep its form? `musegpt form list`:
the forms MuseGPT knows.

Exit codes: 0 the poem passes, 1 it fails (the table and the reasons say why), 2 the input
is wrong (no such file, unknown form)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from musegpt.cli.errors import user_errors
from musegpt.cli.options import read_text_input

if TYPE_CHECKING:
    from musegpt.forms.checker import FormReport
    from musegpt.forms.form import Form

form_app = typer.Typer(
    help="Poetic forms: check a poem against a form, list the forms.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def render_report(report: FormReport, console: Console) -> None:
    """The per-line table, then the verdict, the reasons and the notes."""
    form = report.form
    zh = form.language == "zh"
    table = Table(
        title=f"{form.display_name} — {form.describe()}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("line")
    table.add_column(("字" if zh else "syll.") + " / want", justify="right")
    table.add_column("rhyme", overflow="fold")
    table.add_column("平仄" if zh else "stress", overflow="fold")
    table.add_column("fit", justify="right", min_width=4)
    for line in report.lines:
        rhyme = line.rhyme_letter
        if line.rhymes_with is not None:
            rhyme += f"~{line.rhymes_with}" + ("(eye)" if line.rhyme_kind == "eye" else "")
        want = str(line.budget) if line.budget is not None else "-"
        table.add_row(
            str(line.number),
            "[red]✗[/]" if line.problems else "[green]✓[/]",
            line.text,
            f"{line.units_text} / {want}",
            f"{rhyme} {line.rhyme_group}".strip(),
            line.pattern,
            _score(line.pattern_score),
        )
    console.print(table)
    if report.template:
        console.print(f"平仄 template: {report.template}")
    if report.passed:
        console.print(f"[bold green]PASS[/] {report.summary()}", highlight=False)
    else:
        console.print(f"[bold red]FAIL[/] not a valid {form.display_name}:", highlight=False)
        for reason in report.reasons:
            console.print(f"  - {reason}", highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"  note: {note}", style="dim", highlight=False, soft_wrap=True)


@form_app.command("check")
def check_command(
    file: Annotated[Path, typer.Argument(help="The poem: a UTF-8 text file, or - for stdin.")],
    form: Annotated[
        str,
        typer.Option(
            "--form",
            "-f",
            help="Form name (haiku, limerick, sonnet, quatrain:ABAB, free:12, wujue, 七言律诗, "
            "...) or a YAML form file.",
        ),
    ],
    rhymes: Annotated[
        str | None,
        typer.Option(help="Chinese rhyme system: pingshui (平水韵) or xinyun (中华新韵)."),
    ] = None,
    strict: Annotated[
        bool | None,
        typer.Option("--strict/--lenient", help="Chinese: enforce 平仄 and level-tone rhymes."),
    ] = None,
) -> None:
    """Check a poem against a form: a table per line, exit 1 when it fails."""
    with user_errors():
        from musegpt.forms.checker import check

        chosen = chosen_form(form, rhymes, strict)
        text = read_text_input(file)
        report = check(text, chosen)
    render_report(report, console)
    if not report.passed:
        raise typer.Exit(code=1)


def chosen_form(name: str, rhymes: str | None, strict: bool | None) -> Form:
    """The form the options name, with --rhymes checked."""
    from musegpt.forms.form import RHYME_SYSTEMS, get_form

    for system in RHYME_SYSTEMS:
        if rhymes == system:
            return get_form(name, rhyme_system=system, strict=strict)
    if rhymes is not None:
        raise ValueError(f"--rhymes must be one of {', '.join(RHYME_SYSTEMS)}, not {rhymes!r}")
    return get_form(name, strict=strict)


@form_app.command("list")
def list_command() -> None:
    """The built-in forms, their names in English and Chinese, and their shapes."""
    from musegpt.forms.form import builtin_forms

    table = Table(title="Poetic forms", title_justify="left")
    table.add_column("name")
    table.add_column("also")
    table.add_column("shape")
    for f in builtin_forms():
        table.add_row(f.name, ", ".join(f.aliases), f.describe())
    table.add_row("couplet:AA[:N]", "对句", "2 lines with the rhyme scheme given (N syllables ±1)")
    table.add_row(
        "quatrain:ABAB[:N]", "四行诗", "4 lines with the rhyme scheme given (N syllables ±1)"
    )
    table.add_row("free:N", "自由诗:N", "N lines of free verse")
    table.add_row("FILE.yaml", "", "your own form: lines, syllables/characters, rhyme")
    console.print(table)
