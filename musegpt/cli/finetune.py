"""`musegpt finetune`: continue training a model on a corpus in a new style."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from musegpt.cli.errors import user_errors
from musegpt.cli.train import OVERRIDES_HELP, _interrupted, _summary

if TYPE_CHECKING:
    from musegpt.adapters.train import AdapterSettings
    from musegpt.train.lora import LoraSettings


def finetune_command(
    base: Annotated[
        Path, typer.Option("--from", help="The base model: a model file or a folder holding one.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder for checkpoints and logs.")],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="A corpus prepared with the base model's tokenizer (--tokenizer-from)."
        ),
    ] = None,
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
            "and feed-forward out), c_fc (feed-forward in). [default: all three] On a GGUF "
            "base (Gemma): of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj "
            "[default: all]"
        ),
    ] = None,
    save_adapter: Annotated[
        bool,
        typer.Option(
            "--save-adapter",
            help="Also save the LoRA adapter alone (peft format) in best/adapter and last/adapter.",
        ),
    ] = False,
    lora_layers: Annotated[
        int | None,
        typer.Option(min=1, help="GGUF base: adapt only the last N layers (faster on a CPU)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="GGUF base: training steps. [default: 300]")
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--lr", help="GGUF base: peak learning rate. [default: 1e-3]")
    ] = None,
    seq_len: Annotated[
        int | None,
        typer.Option(min=8, help="GGUF base: tokens per document, cut beyond. [default: 128]"),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="GGUF base: documents per step. [default: 8]")
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option(min=1, help="GGUF base: steps between held-out evaluations. [default: 50]"),
    ] = None,
    works: Annotated[
        str | None,
        typer.Option(
            help="GGUF base: train on a project of the works library (its id or name) and "
            "register the adapter as a model (defaults for a writer's project: 80 steps, the "
            "last 4 layers, lr 2e-3, the whole run within 25 minutes)."
        ),
    ] = None,
    works_db: Annotated[Path, typer.Option(help="The works library (with --works).")] = Path(
        "musegpt-works/works.db"
    ),
    register: Annotated[
        str | None,
        typer.Option(help="GGUF base: register the adapter under this model name."),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="GGUF base: stop after this many evaluations without a better held-out loss.",
        ),
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            help="GGUF base: end the whole run within this many minutes (training stops in "
            "time for the measurements; the best adapter is kept)."
        ),
    ] = None,
) -> None:
    """Fine-tune a trained model on a new corpus (e.g. a style): all its weights, or LoRA
    adapters merged into them at the end (--lora).

    Defaults suit fine-tuning (learning_rate 1e-4, or 1e-3 with --lora; 300 steps,
    evaluation every 50); the model's shape and tokenizer come from the base model.

    A GGUF base (--from gemma3-270m, or a .gguf file) takes --lora and writes a GGUF LoRA,
    OUT/adapter.gguf, for `musegpt models add NAME --base gemma3-270m --adapter FILE`;
    --data is a .txt (documents between blank lines) or .jsonl file, or a folder made by
    `musegpt prepare tang`.
    """
    gguf_options = {
        "--lora-layers": lora_layers, "--steps": steps, "--lr": learning_rate,
        "--seq-len": seq_len, "--batch-size": batch_size, "--eval-every": eval_every,
        "--patience": patience, "--max-minutes": max_minutes,
    }  # fmt: skip
    with user_errors():
        from musegpt.adapters.pipeline import gguf_base_path

        gguf_base = gguf_base_path(base)
    if gguf_base is not None:
        with user_errors():
            if not lora:
                raise ValueError(f"{base} is a GGUF model: fine-tune it with --lora")
            if overrides or config or save_adapter:
                raise ValueError("a GGUF base takes options (--steps, --lr, ...), not settings")
            if (data is None) == (works is None):
                raise ValueError("give the training text: --data FILE or --works PROJECT")
            if works is not None:
                from musegpt.adapters.works import works_model_name, works_text

                data = works_text(works_db, works, out)
                register = register or works_model_name(works)
            settings = _adapter_settings(
                lora_rank, lora_alpha, lora_targets, gguf_options, works=works is not None
            )
        assert data is not None
        _finetune_gguf(base, data, out, settings, resume, register)
        return
    named = {**gguf_options, "--works": works, "--register": register}
    given = [option for option, value in named.items() if value is not None]
    if given:
        with user_errors():
            raise ValueError(
                f"{', '.join(given)} only apply to a GGUF base; for a MuseGPT model use "
                "settings (steps=500, learning_rate=1e-4)"
            )
    if data is None:
        with user_errors():
            raise ValueError("--data is needed: a corpus prepared with the base's tokenizer")
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


def _adapter_settings(
    rank: int | None,
    alpha: int | None,
    targets: str | None,
    options: dict[str, Any],
    works: bool = False,
) -> AdapterSettings:
    """The GGUF LoRA settings the options ask for (defaults for those not given: a works
    project's own, short and bounded, with `works`)."""
    from musegpt.adapters.train import AdapterSettings
    from musegpt.adapters.works import works_settings

    names = {"--lora-layers": "layers", "--steps": "steps", "--lr": "learning_rate",
             "--seq-len": "seq_len", "--batch-size": "batch_size", "--eval-every": "eval_every",
             "--patience": "patience", "--max-minutes": "max_minutes"}  # fmt: skip
    values: dict[str, Any] = {names[k]: v for k, v in options.items() if v is not None}
    if rank is not None:
        values["rank"] = rank
    if alpha is not None:
        values["alpha"] = alpha
    if targets is not None:
        values["targets"] = tuple(t.strip() for t in targets.split(",") if t.strip())
    return works_settings(**values) if works else AdapterSettings(**values)


def _finetune_gguf(
    base: Path, data: Path, out: Path, settings: AdapterSettings, resume: bool, register: str | None
) -> None:
    from musegpt.cli.errors import err_console

    try:
        with user_errors():
            from musegpt.adapters.pipeline import finetune_gguf

            report = finetune_gguf(base, data, out, settings, resume=resume)
            if register is not None:
                from musegpt.adapters.registry import add_adapter

                add_adapter(register, str(base), report.adapter)
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]interrupted.[/] The last checkpoint is in {out / 'checkpoint'}; "
            "continue with --resume."
        )
        raise typer.Exit(code=130) from None
    typer.echo(
        f"adapter: {report.adapter} ({report.steps} steps"
        + (f", {report.tokens_per_second:.0f} tokens/s" if report.tokens_per_second else "")
        + f"); held-out perplexity {report.base_perplexity:.2f} -> "
        f"{report.adapted_perplexity:.2f} ({report.improvement:.0%} lower) on "
        f"{report.heldout_documents} documents; style distance to the held-out text "
        f"{report.base_style_distance:.3f} -> {report.adapted_style_distance:.3f}\n"
        + (
            f"registered as the model {register}: musegpt write ... --model {register}"
            if register
            else f"use it: musegpt models add NAME --base gemma3-270m --adapter {report.adapter}"
        )
    )
