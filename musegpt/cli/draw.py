"""`musegpt draw`, `musegpt train-images` and `musegpt eval images`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from musegpt.cli.errors import err_console, user_errors
from musegpt.cli.options import Opt, SeedOpt
from musegpt.cli.train import OVERRIDES_HELP, _interrupted


def default_out(prompt: str) -> Path:
    """`a red apple` -> a-red-apple.png (a Chinese prompt keeps its characters)."""
    slug = re.sub(r"[^\w]+", "-", prompt.lower()).strip("-")[:60] or "drawing"
    return Path(f"{slug}.png")


def draw_command(
    prompt: Annotated[str, typer.Argument(help='What to draw, e.g. "a red apple".')],
    n: Annotated[int, Opt("-n", "--n", min=1, max=10, help="Pictures to draw.")] = 1,
    size: Annotated[str, Opt(help="Picture size: 256x256, 512x512 or 1024x1024.")] = "256x256",
    seed: SeedOpt = None,
    out: Annotated[
        Path | None, Opt("--out", "-o", help="PNG to write (default: the prompt's words).")
    ] = None,
    separate: Annotated[
        bool, Opt("--separate", help="With -n > 1: numbered files instead of a contact sheet.")
    ] = False,
    style: Annotated[
        str | None, Opt(help="A style of the model (icons: color, flat, outline, line).")
    ] = None,
    temperature: Annotated[
        float | None, Opt(help="Randomness; 0 = greedy (default: the model's).")
    ] = None,
    top_k: Annotated[
        int | None, Opt(help="Keep the k likeliest image tokens; 0 = all (default: the model's).")
    ] = None,
    guidance: Annotated[
        float | None, Opt(help="Classifier-free guidance scale; 1 = off (default: the model's).")
    ] = None,
    rerank: Annotated[
        int | None,
        Opt(help="Draw k candidates a picture, keep the scorer's best (default: model's)."),
    ] = None,
    expand: Annotated[
        bool | None,
        Opt(
            "--expand/--no-expand",
            help="Read the caption as the nearest trained name (default: model's).",
        ),
    ] = None,
    model: Annotated[str, Opt("--model", "-m", help="An image model name or path.")] = "icons",
) -> None:
    """Draw pictures from a caption with an image GPT (English or Chinese captions)."""
    with user_errors():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from musegpt.images import load_image_model, parse_size
        from musegpt.images.sheet import contact_sheet, numbered_paths

        pixels = parse_size(size)
        image_model = load_image_model(model)
        with Progress(
            TextColumn(f"[bold]drawing {n}"), BarColumn(), MofNCompleteColumn(),
            console=err_console, transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task("draw", total=None)
            images = image_model.draw(
                prompt,
                n=n,
                size=pixels,
                seed=seed,
                style=style,
                temperature=temperature,
                top_k=top_k,
                guidance=guidance,
                rerank=rerank,
                expand=expand,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        target = out or default_out(prompt)
        target.parent.mkdir(parents=True, exist_ok=True)
        if n > 1 and separate:
            for image, path in zip(images, numbered_paths(target, n), strict=True):
                image.save(path)
                err_console.print(f"[green]saved[/] {path}")
            return
        picture = contact_sheet(images) if n > 1 else images[0]
        picture.save(target)
        styles = ", ".join(sorted({im.info.get("style", "") for im in images}))
        read = images[0].info.get("caption", prompt)
        err_console.print(
            f"[green]saved[/] {target} ({n} x {pixels}x{pixels}, seed {images[0].info['seed']}, "
            f"style {styles or '-'}" + (f', drawn as "{read}")' if read != prompt else ")"),
            highlight=False,
        )


def train_images_command(
    data: Annotated[Path, typer.Argument(help="A picture folder from `musegpt prepare`.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder for checkpoints and logs.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help=OVERRIDES_HELP, show_default=False)
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML file of settings (configs/icons.yaml)."),
    ] = None,
    guidance: Annotated[
        float, typer.Option(help="The guidance scale the model draws with by default.")
    ] = 1.0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    base: Annotated[
        Path | None,
        typer.Option("--from", help="Start from this image model's weights and tokenizer."),
    ] = None,
    tags: Annotated[
        bool, typer.Option("--tags", help="Also caption each picture with its tags.")
    ] = False,
    flip: Annotated[
        bool, typer.Option("--flip", help="Also train on mirrorable pictures flipped.")
    ] = False,
    shift: Annotated[
        int,
        typer.Option(min=0, help="Also train on every picture moved by up to N pixels (0: no)."),
    ] = 0,
    focus: Annotated[
        str | None,
        typer.Option(
            help="Corpus groups to train on more, comma-separated (e.g. food-drink,objects): "
            "their records are repeated to --focus-share of the training records."
        ),
    ] = None,
    focus_share: Annotated[
        float, typer.Option(help="The share of the training records the --focus groups make up.")
    ] = 0.75,
    resolution: Annotated[
        int | None,
        typer.Option(help="Pictures are shrunk to this many pixels square (default 32)."),
    ] = None,
    patch: Annotated[
        int | None,
        typer.Option(help="Pixels square per image token: (resolution/patch)^2 tokens (4)."),
    ] = None,
    codebook: Annotated[
        int | None, typer.Option(help="Image token vocabulary: k-means entries (1024).")
    ] = None,
) -> None:
    """Train an image model: caption tokens, then image tokens, one GPT."""
    try:
        with user_errors():
            from musegpt.images.train import TokenizerSettings, train_image_model
            from musegpt.train.config import load_config

            shape = {"resolution": resolution, "patch": patch, "codebook_size": codebook}
            given = {key: value for key, value in shape.items() if value is not None}
            if given and (base is not None or resume):
                raise ValueError(
                    "--resolution, --patch and --codebook set a new tokenizer; a run with "
                    "--from or --resume keeps the one it started with: drop them"
                )
            groups = tuple(group.strip() for group in (focus or "").split(",") if group.strip())
            settings = TokenizerSettings(
                tag_captions=tags,
                flip=flip,
                shift=shift,
                focus=groups,
                focus_share=focus_share,
                **given,
            )
            cfg = load_config(config, overrides or [])
            best = train_image_model(
                data, out, cfg, guidance=guidance, resume=resume, base=base, settings=settings
            )
    except KeyboardInterrupt:
        _interrupted(out)
    with user_errors():
        from musegpt.images.memory import remember_training_split

        # its names and tags (caption expansion) and its pictures (the originality guard)
        remember_training_split(best, data)
    typer.echo(f'done. Draw with: musegpt draw "a red apple" --model {best.parent}')


def eval_images_command(
    model: Annotated[str, Opt("--model", "-m", help="An image model name or path.")] = "icons",
    corpus: Annotated[
        Path | None, Opt(help="Picture folder (default: the icons corpus, prepared if needed).")
    ] = None,
    per_caption: Annotated[int, Opt(min=2, max=10, help="Pictures per caption.")] = 4,
    seed: Annotated[int, Opt(help="Seed of the first caption (then +1 each).")] = 0,
    guidance: Annotated[
        float | None, Opt(help="Classifier-free guidance scale (default: the model's).")
    ] = None,
    temperature: Annotated[float | None, Opt(help="Randomness (default: the model's).")] = None,
    top_k: Annotated[int | None, Opt(help="Top-k; 0 = all (default: the model's).")] = None,
    rerank: Annotated[
        int | None, Opt(help="Candidates per picture, best by the scorer (default: model's).")
    ] = None,
    expand: Annotated[
        bool | None,
        Opt("--expand/--no-expand", help="Caption expansion (default: the model's)."),
    ] = None,
    guard: Annotated[
        bool, Opt("--guard/--no-guard", help="Redraw near-copies of training pictures.")
    ] = True,
    limit: Annotated[int | None, Opt(min=1, help="Only the first N captions.")] = None,
    out: Annotated[Path, Opt(help="Markdown report.")] = Path("docs/images-eval.md"),
    examples: Annotated[Path, Opt(help="Grid of example pictures (PNG).")] = Path(
        "docs/images-examples.png"
    ),
) -> None:
    """Caption fidelity, diversity and originality of an image model on a fixed caption set."""
    with user_errors():
        from musegpt.fileio import atomic_write_text
        from musegpt.images import load_image_model
        from musegpt.images.evaluate import (
            build_reference,
            evaluate_images,
            examples_grid,
            machine_description,
            markdown_report,
        )

        image_model = load_image_model(model)
        if corpus is None:
            from musegpt.images.corpus import icons_corpus

            corpus = icons_corpus()

        def say(message: str) -> None:
            err_console.print(message, highlight=False)

        reference = build_reference(image_model.tokenizer, corpus, say)
        report = evaluate_images(
            image_model, reference, per_caption=per_caption, seed=seed, guidance=guidance,
            temperature=temperature, top_k=top_k, rerank=rerank, expand=expand, guard=guard,
            limit=limit, say=say,
        )  # fmt: skip
        command = f"musegpt eval images --model {model} --per-caption {per_caption} --seed {seed}"
        for option, value in (
            ("guidance", guidance), ("temperature", temperature), ("top-k", top_k),
            ("rerank", rerank), ("limit", limit),
        ):  # fmt: skip
            if value is not None:
                command += f" --{option} {value:g}"
        command += {True: " --expand", False: " --no-expand", None: ""}[expand]
        command += "" if guard else " --no-guard"
        text = markdown_report(report, command, machine_description())
        text += f"\n![examples]({examples.name})\n"
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text)
        examples.parent.mkdir(parents=True, exist_ok=True)
        examples_grid(report.results).save(examples)
        typer.echo(text)
        err_console.print(f"[green]saved[/] {out} and {examples}")


def train_scorer_command(
    data: Annotated[Path, typer.Argument(help="A picture folder from `musegpt prepare`.")],
    model: Annotated[
        Path, typer.Option("--model", "-m", help="The image model file to store the scorer in.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder for checkpoints and the log.")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Settings as key=value, e.g. steps=500.", show_default=False),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML file of settings (configs/icons-scorer.yaml)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
) -> None:
    """Train a caption-picture scorer (a tiny CLIP) and store it in an image model, which then
    keeps the best of `--rerank` candidates by its score."""
    with user_errors():
        from musegpt.images import load_image_model
        from musegpt.images.model import image_model_path
        from musegpt.images.scorer import load_scorer_config, store_scorer
        from musegpt.images.scorer_train import retrieval, train_scorer

        settings = load_scorer_config(config, overrides or [])
        image_model = load_image_model(model)

        def say(message: str) -> None:
            err_console.print(message, highlight=False)

        scorer = train_scorer(data, image_model.tokenizer, settings, out, resume=resume, say=say)
        found = retrieval(scorer, data)
        store_scorer(image_model_path(model), scorer.model)
    measured = (
        f"caption -> picture retrieval among {found.candidates} validation pictures: "
        f"top-1 {found.top1:.1%}, top-5 {found.top5:.1%} (English top-1 {found.top1_en:.1%}, "
        f"Chinese {found.top1_zh:.1%})"
        if found
        else "no validation split to measure it on"
    )
    typer.echo(f"{measured}; stored in {image_model_path(model)}")
