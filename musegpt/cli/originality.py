"""`musegpt originality index --model M [--corpus ...]`: index a model's training corpus
(once) for the originality guard (`--max-copy`) and for checks; `musegpt originality check
FILE --model M`: how much of a text comes verbatim from that corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from musegpt.cli.errors import user_errors
from musegpt.cli.options import read_text_input

originality_app = typer.Typer(
    help="The originality guard: index a model's training corpus, check a text against it.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="a model name or path (default: the default)")
]


@originality_app.command("index")
def index_command(
    model: ModelOption = None,
    corpus: Annotated[
        list[str] | None,
        typer.Option(
            "--corpus",
            help="what the model learnt from: a prepared corpus folder, or files, folders and "
            "built-in corpus names (repeat the option); packaged models know their own",
        ),
    ] = None,
) -> None:
    """Build the index of MODEL's training corpus (stored beside the corpus) and link it."""
    from musegpt.engines.registry import open_engine
    from musegpt.originality.store import build_for_model

    with user_errors():
        engine = open_engine(model)
        built = build_for_model(engine.path, engine.tokenizer, engine.name, corpus or ())
    size = built.index.size
    console.print(
        f"indexed {len(built.index.documents):,} documents, {size:,} tokens of {built.corpus} "
        f"for {engine.name}: {built.folder}",
        highlight=False,
        soft_wrap=True,
    )


@originality_app.command("check")
def check_command(
    file: Annotated[Path, typer.Argument(help="the text or ABC tune to check ('-': stdin)")],
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """The longest span FILE shares verbatim with MODEL's training corpus, where it comes
    from, a near-duplicate score, and for an ABC tune the bars copied."""
    from musegpt.engines.registry import open_engine
    from musegpt.originality.check import check_text
    from musegpt.originality.store import index_for_model, linked_folder

    with user_errors():
        text = read_text_input(file)
        engine = open_engine(model)
        index = index_for_model(engine.path, engine.tokenizer, engine.name)
        report = check_text(text, index, engine.tokenizer, linked_folder(engine.path))
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return
    out = console.print
    out(
        f"{file}: {report.tokens:,} tokens, {report.characters:,} characters",
        highlight=False,
        soft_wrap=True,
    )
    if report.source is None:
        out("longest copied span: none (no token of it occurs in the corpus)")
    else:
        source = report.source
        out(
            f"longest copied span: {report.longest_tokens} tokens, "
            f"{len(report.longest_text)} characters, found {report.occurrences:,} time(s) in "
            f"the corpus; one is document {source.document} ({source.first_line!r}), line "
            f"{source.line}:",
            highlight=False,
            soft_wrap=True,
        )
        out(f"  {report.longest_text!r}", highlight=False, soft_wrap=True)
    if report.nearest_document is not None:
        out(
            f"near-duplicate score: {report.near_duplicate:.2f} (estimated Jaccard similarity "
            f"of character 5-grams, closest: document {report.nearest_document})",
            highlight=False,
            soft_wrap=True,
        )
    if report.bars is not None:
        bars = report.bars
        more = " or more" if bars.capped else ""
        out(
            f"bars copied: {bars.found} of {bars.bars} bars occur in a corpus tune; the longest "
            f"run shared with one is {bars.longest_run}{more} bars",
            highlight=False,
            soft_wrap=True,
        )
