"""`musegpt train` and `musegpt quickstart`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from musegpt.cli.errors import user_errors

if TYPE_CHECKING:
    from musegpt.train.trainer import TrainResult

OVERRIDES_HELP = (
    "Settings that override the config file, as key=value: e.g. n_layer=2 "
    "learning_rate=3e-4 max_iters=500 dropout=0.1 compile=true dtype=float32."
)


def _interrupted(out: Path) -> NoReturn:
    from musegpt.cli.errors import err_console

    err_console.print(
        f"[yellow]interrupted.[/] The last checkpoint is in {out / 'last'}; continue with --resume."
    )
    raise typer.Exit(code=130)


def _summary(result: TrainResult) -> None:
    if not result.is_main:
        return
    val = f"{result.final_val_loss:.4f}" if result.final_val_loss is not None else "-"
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "-"
    typer.echo(
        f"done: {result.steps} steps, val loss {val} (best {best}), "
        f"{result.tokens_per_second:,.0f} tokens/s. Sample with: "
        f"musegpt sample {result.out_dir / 'best'}"
    )


def train_command(
    data: Annotated[
        Path, typer.Option("--data", help="A prepared corpus folder (from `musegpt prepare`).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder for checkpoints and logs.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help=OVERRIDES_HELP, show_default=False)
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML file of settings (configs/).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a GPT on a prepared corpus: a config file plus key=value overrides.

    Under `torchrun --nproc_per_node=N` this trains data-parallel (DDP) across N processes;
    with fsdp=true the weights, gradients and optimizer state are sharded across them (FSDP).
    """
    try:
        with user_errors():
            from musegpt.train.checkpoint import saved_config
            from musegpt.train.config import TrainConfig, coerce_settings, load_config
            from musegpt.train.trainer import LAST, Trainer

            base = None
            if resume and (out / LAST).is_dir():
                # The run's own settings, unless the file or the command line change them.
                base = TrainConfig(**coerce_settings(saved_config(out / LAST), "the checkpoint"))
            cfg = load_config(config, overrides or [], base=base)
            result = Trainer(cfg, data, out, resume=resume, progress=progress).run()
    except KeyboardInterrupt:
        _interrupted(out)
    _summary(result)


def quickstart_command(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the prepared corpus and the run.")
    ] = Path("musegpt-quickstart"),
    max_iters: Annotated[
        int | None,
        typer.Option("--max-iters", min=1, help="Training steps (default: the baby config's)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Prepare the built-in Shakespeare corpus, train a small character-level GPT on it
    (a few minutes on a laptop CPU) and print a sample."""
    data_dir, run_dir = out / "data", out / "run"
    try:
        with user_errors():
            from musegpt.generation.sampling import sample_text
            from musegpt.model.io import load_model
            from musegpt.train.config import QUICKSTART_ITERS, SHAKESPEARE_CHAR, TrainConfig
            from musegpt.train.trainer import BEST, LAST, Trainer

            started = time.perf_counter()
            typer.echo(f"preparing the built-in shakespeare corpus in {data_dir} ...")
            _prepare_shakespeare(data_dir)  # does nothing when it is already there
            iters = max_iters or QUICKSTART_ITERS
            settings = {**SHAKESPEARE_CHAR, "max_iters": iters, "lr_decay_iters": iters}
            cfg = TrainConfig(**settings)
            # The run folder is quickstart's own: each quickstart starts a fresh run.
            for name in (LAST, BEST):
                if (run_dir / name).is_dir():
                    shutil.rmtree(run_dir / name)
            typer.echo(f"training a {cfg.n_layer}-layer character-level GPT in {run_dir} ...")
            result = Trainer(cfg, data_dir, run_dir, progress=progress).run()
            model, tokenizer = load_model(run_dir / BEST)
            text = sample_text(
                model, tokenizer, "", max_new_tokens=600, temperature=0.8, top_k=50, seed=1
            )
    except KeyboardInterrupt:
        _interrupted(run_dir)
    minutes = (time.perf_counter() - started) / 60
    val = f"{result.best_val_loss:.3f}" if result.best_val_loss is not None else "-"
    typer.echo(f"\n--- a sample from {run_dir / BEST} (best val loss {val}) ---\n")
    typer.echo(text.strip())
    typer.echo(
        f"\n--- done in {minutes:.1f} min. More: musegpt sample {run_dir / BEST} "
        '--prompt "ROMEO:" --max-new-tokens 500 ---'
    )


def _prepare_shakespeare(data_dir: Path) -> None:
    from musegpt.data.prepare import prepare_corpus

    prepare_corpus(["shakespeare"], data_dir, tokenizer="char")
