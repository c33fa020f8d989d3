"""`musegpt prepare`: a thin wrapper over `musegpt.data.prepare.prepare_corpus` with a
progress display and a summary table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from musegpt.adapters.corpus import ADAPTER_CORPORA
from musegpt.cli.errors import user_errors
from musegpt.data.sources import SplitOn

if TYPE_CHECKING:
    from musegpt.data.prepare import PrepareReport

console = Console(stderr=True)  # progress goes to stderr, the summary to stdout

BUILTIN_HELP = (
    "shakespeare, poetry-en, tang-poems, song-ci, abc-folk; adapter corpora: "
    + ", ".join(ADAPTER_CORPORA)
)
PICTURES = "icons"  # the built-in picture corpus (musegpt.images.corpus)


class TokenizerKind(StrEnum):
    bpe = "bpe"
    char = "char"


class RichProgress:
    """`musegpt.data.prepare.Progress` drawn with rich: one bar per stage."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None
        self._done = 0

    def start(self, description: str, total: int | None = None) -> None:
        if self._task is not None:  # a stage without a known total ends as a full bar
            self._progress.update(self._task, total=self._done, completed=self._done)
        self._task = self._progress.add_task(description, total=total)
        self._done = 0

    def advance(self, amount: int = 1) -> None:
        if self._task is not None:
            self._done += amount
            self._progress.advance(self._task, amount)


@contextmanager
def _progress_display() -> Iterator[RichProgress]:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("documents"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield RichProgress(progress)


def prepare_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            help=f"Files (.txt, .md, .jsonl), folders, or built-in corpora: {BUILTIN_HELP}; "
            f"pictures: {PICTURES}, or a folder of pictures with --captions.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the prepared corpus.")],
    tokenizer: Annotated[TokenizerKind, typer.Option(help="Tokenizer to train.")] = (
        TokenizerKind.bpe
    ),
    vocab_size: Annotated[int, typer.Option(min=257, help="BPE vocabulary size.")] = 8192,
    tokenizer_from: Annotated[
        Path | None,
        typer.Option(
            help="Reuse the tokenizer of a prepared corpus folder or a model "
            "(fine-tuning needs the base model's tokenizer)."
        ),
    ] = None,
    split_on: Annotated[
        SplitOn,
        typer.Option(
            help="Cut .txt/.md files into documents: whole file, blank lines, lines, "
            "or the literal <|endoftext|>."
        ),
    ] = SplitOn.FILE,
    field: Annotated[str, typer.Option(help="JSON Lines field holding the text.")] = "text",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Read at most N documents from each source.")
    ] = None,
    min_chars: Annotated[int, typer.Option(min=1, help="Drop shorter documents.")] = 1,
    max_chars: Annotated[int | None, typer.Option(min=1, help="Drop longer documents.")] = None,
    dedup_threshold: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Jaccard similarity above which a document is a "
            "near duplicate (MinHash LSH); 0 turns it off.",
        ),
    ] = 0.8,
    no_near_dedup: Annotated[
        bool, typer.Option("--no-near-dedup", help="Keep near duplicates.")
    ] = False,
    val_fraction: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            help="Share of documents for validation (of a single document: the share of "
            "its text, cut from its end).",
        ),
    ] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the train/validation split.")] = 1337,
    captions: Annotated[
        Path | None,
        typer.Option(
            help="Pictures: a JSON Lines file captioning the folder's pictures, e.g. "
            '{"file": "cat.png", "caption": "a grey cat"}.'
        ),
    ] = None,
    image_size: Annotated[
        int, typer.Option(help="Pictures: the side in pixels they are drawn at.")
    ] = 64,
) -> None:
    """Clean, deduplicate and tokenize text into a corpus ready for `musegpt train`, or
    draw and caption pictures (`icons`, or a folder with --captions).

    Running it again with the same inputs and options does nothing ("up to date")."""
    if sources == [PICTURES] or captions is not None:
        _prepare_pictures(sources, out, captions, image_size, limit)
        return
    if len(sources) == 1 and sources[0] in ADAPTER_CORPORA:  # musegpt/adapters/corpus.py
        with user_errors():
            from musegpt.adapters.corpus import prepare_adapter_corpus

            manifest = prepare_adapter_corpus(sources[0], out, seed)
        typer.echo(
            f"prepared {out}: {manifest['train_documents']} training and "
            f"{manifest['heldout_documents']} held-out documents; train with "
            f"`musegpt finetune --from gemma3-270m --lora --data {out} --out OUT`"
        )
        return
    with user_errors():
        from musegpt.data.prepare import PrepareSettings, prepare_corpus

        settings = PrepareSettings(
            tokenizer="char" if tokenizer is TokenizerKind.char else "bpe",
            vocab_size=vocab_size,
            tokenizer_from=tokenizer_from,
            split_on=split_on,
            field=field,
            limit=limit,
            min_chars=min_chars,
            max_chars=max_chars,
            dedup_threshold=0.0 if no_near_dedup else dedup_threshold,
            val_fraction=val_fraction,
            seed=seed,
        )
        with _progress_display() as progress:
            report = prepare_corpus(sources, out, settings, progress)
    if report.up_to_date:
        typer.echo(f"{report.out} is up to date (same sources and settings); nothing to do.")
        return
    Console().print(_summary(report))
    if report.counts.get("split_documents"):
        typer.echo(
            f"one document: its last {report.manifest['settings']['val_fraction']:.0%} of text "
            "is the validation split (--val-fraction)"
        )
    typer.echo(
        f"prepared {report.out} in {report.seconds:.1f} s; train with "
        f"`musegpt train --data {report.out}`"
    )


def _prepare_pictures(
    sources: list[str], out: Path, captions: Path | None, image_size: int, limit: int | None
) -> None:
    with user_errors():
        from musegpt.images.corpus import ImageCorpusError, prepare_icons, prepare_pictures

        if len(sources) != 1:
            raise ImageCorpusError(
                f"pictures are prepared one source at a time: {PICTURES}, or one folder "
                "with --captions"
            )
        with Progress(*_PICTURE_COLUMNS, console=console) as display:
            task = display.add_task("drawing pictures", total=None)

            def advance(done: int, total: int) -> None:
                display.update(task, completed=done, total=total)

            if captions is None:
                report = prepare_icons(out, image_size, progress=advance, limit=limit)
            else:
                report = prepare_pictures(Path(sources[0]), captions, out, image_size, advance)
    if report.up_to_date:
        typer.echo(f"{report.out} is up to date (same sources and settings); nothing to do.")
        return
    counts = report.manifest["counts"]
    table = Table(title=f"Prepared pictures {report.out}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for entry in report.manifest["sets"]:
        licence = f", {entry['licence']}" if entry.get("licence") else ""
        table.add_row(f"{entry['name']} ({entry['style']}{licence})", f"{entry['images']:,}")
    table.add_row(
        "removed: duplicates / blank", f"{counts['duplicates_removed']} / {counts['blank_removed']}"
    )
    table.add_row(
        "train / val / test", f"{counts['train']:,} / {counts['val']:,} / {counts['test']:,}"
    )
    if counts.get("uncaptioned_skipped"):
        table.add_row("left out: pictures not in --captions", f"{counts['uncaptioned_skipped']}")
    Console().print(table)
    if any(entry.get("share_alike") for entry in report.manifest["sets"]):
        typer.echo(
            "some sets are CC BY-SA 4.0 (share-alike): credit them, and share pictures derived "
            "from them under the same licence"
        )
    typer.echo(f"prepared {report.out}; the licences and attributions are in its manifest.json")


_PICTURE_COLUMNS = (
    SpinnerColumn(),
    TextColumn("{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TimeElapsedColumn(),
)


def _summary(report: PrepareReport) -> Table:
    counts = report.counts
    info = report.manifest["tokenizer"]
    table = Table(title=f"Prepared corpus {report.out}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows: list[tuple[str, int | str]] = [
        ("documents read", counts["documents_read"]),
        ("removed: exact duplicates", counts["exact_duplicates"]),
        ("removed: near duplicates", counts["near_duplicates"]),
        ("removed: too short / too long", f"{counts['too_short']} / {counts['too_long']}"),
        (
            "kept: train / val documents",
            f"{counts['train_documents']:,} / {counts['val_documents']:,}",
        ),
        ("tokens: train / val", f"{counts['train_tokens']:,} / {counts['val_tokens']:,}"),
        ("tokenizer", f"{info['kind']}, {info['vocab_size']:,} tokens"),
    ]
    for name, value in rows:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else value)
    return table
