"""`musegpt eval ...`: measure what the studio writes, and record it as a Markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from musegpt.cli.errors import err_console, user_errors
from musegpt.cli.options import ModelOpt, Opt

eval_app = typer.Typer(help="Evaluate what MuseGPT writes.", no_args_is_help=True)


@eval_app.command("studio")
def studio_command(
    model: ModelOpt = None,
    tasks: Annotated[str, Opt(help="Comma-separated tasks (default: all).")] = "",
    langs: Annotated[str, Opt(help="Comma-separated languages.")] = "en,zh",
    per_task: Annotated[int, Opt(min=1, max=20, help="Prompts per task and language.")] = 20,
    seed: Annotated[int, Opt(help="Seed of the first prompt (then +1 each).")] = 0,
    out: Annotated[Path, Opt("--out", "-o", help="Markdown table to write.")] = Path(
        "docs/studio-eval.md"
    ),
) -> None:
    """Every studio task on the fixed prompt set: distinct-1/2, repetition, structural
    validity, length and seconds per piece."""
    with user_errors():
        from rich.progress import Progress

        from musegpt.engines.registry import open_engine
        from musegpt.fileio import atomic_write_text
        from musegpt.studio import TASKS, Studio
        from musegpt.studio.evaluate import evaluate, markdown_table, score_dicts

        chosen_tasks = [t for t in tasks.split(",") if t] or TASKS
        unknown = [t for t in chosen_tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
        chosen_langs = [lang for lang in langs.split(",") if lang]
        if any(lang not in ("en", "zh") for lang in chosen_langs):
            raise ValueError(f"--langs takes en and/or zh (got {langs!r})")
        engine = open_engine(model)
        studio = Studio(engine)
        scores = []
        total = len(chosen_tasks) * len(chosen_langs)
        with Progress(console=err_console) as bar:
            job = bar.add_task("evaluating", total=total)
            for score in evaluate(
                studio, chosen_tasks, chosen_langs, per_task, seed,  # type: ignore[arg-type]
                progress=lambda message: bar.update(job, description=message),
            ):  # fmt: skip
                scores.append(score)
                bar.advance(job)
                err_console.print(score.row(), highlight=False)
        rows = [s.row() for s in scores]
        command = f"musegpt eval studio --model {engine.name} --per-task {per_task} --seed {seed}"
        page = (
            f"# Studio evaluation\n\nModel: `{engine.name}` ({engine.backend}). "
            f"Command: `{command}`.\n\n" + markdown_table(rows)
        )
        atomic_write_text(out, page)
        raw = json.dumps(score_dicts(scores), ensure_ascii=False, indent=1)
        atomic_write_text(out.with_suffix(".json"), raw)
        err_console.print(f"[green]saved[/] {out}")
