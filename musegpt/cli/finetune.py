"""`musegpt finetune`: continue training a model on a corpus in a new style."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from musegpt.cli.errors import user_errors
from musegpt.cli.train import OVERRIDES_HELP, _interrupted, _summary


def finetune_command(
    base: Annotated[
        Path, typer.Option("--from", help="The base model: a model file or a folder holding one.")
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data", help="A corpus prepared with the base model's tokenizer (--tokenizer-from)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder for checkpoints and logs.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help=OVERRIDES_HELP, show_default=False)
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML file of settings (the shape keys must match)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Fine-tune all the weights of a trained model on a new corpus (e.g. a style).

    Defaults suit fine-tuning (learning_rate 1e-4, 300 steps, evaluation every 50); the
    model's shape and tokenizer come from the base model.
    """
    try:
        with user_errors():
            from musegpt.train.finetune import finetune

            result = finetune(
                base,
                data,
                out,
                config_file=config,
                overrides=overrides or [],
                resume=resume,
                progress=progress,
            )
    except KeyboardInterrupt:
        _interrupted(out)
    _summary(result)
