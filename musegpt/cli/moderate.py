"""`musegpt moderate`: OpenAI-style moderation of texts, offline; and `musegpt eval safety`,
the moderation's precision and recall on the labelled sets, written into docs/safety.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from musegpt.cli.errors import user_errors
from musegpt.cli.options import Opt, read_text_input

EVAL_START = "<!-- safety-eval:start -->"
EVAL_END = "<!-- safety-eval:end -->"


def moderate_command(
    texts: Annotated[
        list[str], typer.Argument(help="Texts to moderate; @FILE reads one from a file (@- stdin).")
    ],
    as_json: Annotated[
        bool, Opt("--json", help="Print OpenAI's answer shape (results with all 13 categories).")
    ] = False,
) -> None:
    """Score texts in OpenAI's moderation categories (English and Chinese, offline). Exits
    with status 1 when any text is flagged."""
    with user_errors():
        from musegpt.safety import moderate
        from musegpt.safety.categories import MODEL

        inputs = [read_text_input(Path(t[1:])) if t.startswith("@") else t for t in texts]
        results = moderate(inputs)
        if as_json:
            answer = {"model": MODEL, "results": [r.openai() for r in results]}
            typer.echo(json.dumps(answer, ensure_ascii=False, indent=2))
        else:
            for text, result in zip(texts, results, strict=True):
                label = text if len(text) <= 60 else text[:57] + "..."
                if not result.flagged:
                    typer.echo(f"ok       {label}")
                    continue
                scores = ", ".join(
                    f"{c} {result.category_scores[c]:.2f}" for c in result.flagged_categories
                )
                why = "; ".join(sorted({f"{h.source}: {h.text.strip()}" for h in result.hits}))
                typer.echo(f"FLAGGED  {label}\n         {scores}\n         because {why}")
    if any(r.flagged for r in results):
        raise typer.Exit(code=1)


def safety_eval_command(
    out: Annotated[
        Path, Opt("--out", "-o", help="The Markdown file whose evaluation section is rewritten.")
    ] = Path("docs/safety.md"),
    show_mistakes: Annotated[
        bool, Opt("--mistakes", help="Also print every sentence scored against its label.")
    ] = False,
) -> None:
    """The moderation on its labelled English and Chinese sets (dev and held-out):
    precision and recall per category, benign creative text passed, slurs and threats caught."""
    with user_errors():
        import platform

        from musegpt.fileio import atomic_write_text
        from musegpt.safety import moderator
        from musegpt.safety.evaluate import SPLITS, markdown, mistakes, run

        sections = []
        for split in SPLITS:
            scored = run(moderator(), split)
            title = (
                "Dev set (the rules were tuned on it)"
                if split == "dev"
                else ("Held-out set (never used to tune the rules)")
            )
            sections.append(f"### {title}\n\n" + markdown(scored).replace("### ", "#### "))
            if show_mistakes:
                for line in mistakes(scored):
                    typer.echo(f"{split} {line}")
        machine = f"{platform.machine()}, Python {platform.python_version()}"
        body = (
            f"{EVAL_START}\nMeasured by `musegpt eval safety` ({machine}).\n\n"
            + "\n".join(sections)
            + EVAL_END
        )
        text = out.read_text("utf-8") if out.exists() else ""
        if EVAL_START in text and EVAL_END in text:
            before, rest = text.split(EVAL_START, 1)
            text = before + body + rest.split(EVAL_END, 1)[1]
        else:
            text = text + ("\n" if text else "") + body + "\n"
        atomic_write_text(out, text)
        typer.echo(f"wrote the evaluation into {out}")
