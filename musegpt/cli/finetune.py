"""`musegpt finetune`: continue training a model on a corpus in a new style."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from musegpt.cli.errors import user_errors
from musegpt.cli.train import OVERRIDES_HELP, _interrupted, _summary

if TYPE_CHECKING:
    from musegpt.train.lora import LoraSettings


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
    lora: Annotated[
        bool,
        typer.Option(
            "--lora",
            help="Train low-rank adapters (LoRA, with peft) instead of all the weights; "
            "checkpoints hold the merged model.",
        ),
    ] = False,
    lora_rank: Annotated[
        int | None, typer.Option(min=1, help="LoRA rank (with --lora). [default: 8]")
    ] = None,
    lora_alpha: Annotated[
        int | None,
        typer.Option(min=1, help="LoRA alpha: adapters are scaled by alpha/rank. [default: 16]"),
    ] = None,
    lora_targets: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated layers to adapt, of c_attn (attention in), c_proj (attention "
            "and feed-forward out), c_fc (feed-forward in). [default: all three]"
        ),
    ] = None,
    save_adapter: Annotated[
        bool,
        typer.Option(
            "--save-adapter",
            help="Also save the LoRA adapter alone (peft format) in best/adapter and last/adapter.",
        ),
    ] = False,
) -> None:
    """Fine-tune a trained model on a new corpus (e.g. a style): all its weights, or LoRA
    adapters merged into them at the end (--lora).

    Defaults suit fine-tuning (learning_rate 1e-4, or 1e-3 with --lora; 300 steps,
    evaluation every 50); the model's shape and tokenizer come from the base model.
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
                lora=_lora_settings(lora, lora_rank, lora_alpha, lora_targets),
                save_adapter=save_adapter,
                resume=resume,
                progress=progress,
            )
    except KeyboardInterrupt:
        _interrupted(out)
    _summary(result)


def _lora_settings(
    lora: bool, rank: int | None, alpha: int | None, targets: str | None
) -> LoraSettings | None:
    """The LoRA settings the options ask for; None without --lora."""
    from musegpt.train.lora import LoraSettings

    named = (("--lora-rank", rank), ("--lora-alpha", alpha), ("--lora-targets", targets))
    given = [option for option, value in named if value is not None]
    if not lora:
        if given:
            raise ValueError(f"{', '.join(given)} only apply with --lora")
        return None
    defaults = LoraSettings()
    return LoraSettings(
        rank=defaults.rank if rank is None else rank,
        alpha=defaults.alpha if alpha is None else alpha,
        targets=defaults.targets
        if targets is None
        else [t.strip() for t in targets.split(",") if t.strip()],
    )
