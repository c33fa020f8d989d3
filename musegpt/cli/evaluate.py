"""`musegpt eval ...`: measure what the studio writes, and record it as a Markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from musegpt.cli.errors import err_console, user_errors
from musegpt.cli.options import ModelOpt, Opt, Samplers, sampler_options

eval_app = typer.Typer(help="Evaluate what MuseGPT writes.", no_args_is_help=True)


@eval_app.command("studio")
@sampler_options
def studio_command(
    model: ModelOpt = None,
    tasks: Annotated[str, Opt(help="Comma-separated tasks (default: all).")] = "",
    langs: Annotated[str, Opt(help="Comma-separated languages.")] = "en,zh",
    per_task: Annotated[int, Opt(min=1, max=20, help="Prompts per task and language.")] = 20,
    seed: Annotated[int, Opt(help="Seed of the first prompt (then +1 each).")] = 0,
    out: Annotated[Path, Opt("--out", "-o", help="Markdown table to write.")] = Path(
        "docs/studio-eval.md"
    ),
    samplers: Samplers = None,
) -> None:
    """Every studio task on the fixed prompt set: distinct-1/2, repetition, structural
    validity, length and seconds per piece."""
    with user_errors():
        from rich.progress import Progress

        from musegpt.engines.registry import open_engine
        from musegpt.fileio import atomic_write_text
        from musegpt.generation.params import SamplingParams
        from musegpt.studio import Studio
        from musegpt.studio.evaluate import EVALUATED_TASKS, evaluate, markdown_table, score_dicts

        chosen_tasks = [t for t in tasks.split(",") if t] or EVALUATED_TASKS
        unknown = [t for t in chosen_tasks if t not in EVALUATED_TASKS]
        if unknown:
            known = ", ".join(EVALUATED_TASKS)
            raise ValueError(
                f"unknown task(s) {', '.join(unknown)}; known: {known} "
                "(poems are measured by `musegpt eval forms`)"
            )
        chosen_langs = [lang for lang in langs.split(",") if lang]
        if any(lang not in ("en", "zh") for lang in chosen_langs):
            raise ValueError(f"--langs takes en and/or zh (got {langs!r})")
        engine = open_engine(model)
        studio = Studio(engine, SamplingParams(**(samplers or {})))
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
        if tasks:
            command += f" --tasks {tasks}"
        if langs != "en,zh":
            command += f" --langs {langs}"
        for name, value in (samplers or {}).items():  # the samplers asked for, as options
            command += f" --{name.replace('_', '-')} {value}"
        page = (
            f"# Studio evaluation\n\nModel: `{engine.name}` ({engine.backend}). "
            f"Command: `{command}`.\n\n" + markdown_table(rows)
        )
        atomic_write_text(out, page)
        raw = json.dumps(score_dicts(scores), ensure_ascii=False, indent=1)
        atomic_write_text(out.with_suffix(".json"), raw)
        err_console.print(f"[green]saved[/] {out}")


@eval_app.command("forms")
def forms_command(
    model: ModelOpt = None,
    forms: Annotated[
        str, Opt(help="Comma-separated forms (default: haiku, limerick, sonnet, wujue, qilu).")
    ] = "",
    topics: Annotated[int, Opt(min=1, max=40, help="Topics per form.")] = 30,
    batch: Annotated[int, Opt(min=1, help="Topics decoded together (one batch).")] = 1,
    seed: Annotated[int, Opt(help="Seed of the first topic (then +1 each).")] = 0,
    reference: Annotated[
        str | None,
        Opt(
            help="Corpus for the copied-line rate: a prepared corpus folder (its training "
            "split), a text file, or built-in corpus names (e.g. poetry-en,tang-poems)."
        ),
    ] = None,
    reference_limit: Annotated[
        int | None, Opt(min=1, help="Documents read from each built-in reference corpus.")
    ] = None,
    out: Annotated[Path, Opt("--out", "-o", help="Markdown table to write.")] = Path(
        "docs/forms-eval.md"
    ),
) -> None:
    """Poems in exact forms on a fixed topic set: pass rate with and without the form
    constraints, seconds per poem, distinct-2 and the share of lines copied from a corpus."""
    with user_errors():
        from musegpt.engines.registry import open_engine
        from musegpt.fileio import atomic_write_text
        from musegpt.forms.evaluate import DEFAULT_FORMS, evaluate, load_reference, markdown_table

        chosen_forms = [f.strip() for f in forms.split(",") if f.strip()] or DEFAULT_FORMS
        engine = open_engine(model)
        ref = load_reference(reference, reference_limit) if reference else None
        scores = []

        def say(message: str) -> None:
            err_console.print(message, highlight=False)

        for score in evaluate(
            engine, chosen_forms, topics, seed=seed, reference=ref, batch=batch, progress=say
        ):
            scores.append(score)
            err_console.print(score.row(), highlight=False)
        command = f"musegpt eval forms --model {engine.name} --forms {','.join(chosen_forms)}"
        command += f" --topics {topics} --batch {batch} --seed {seed}"
        if reference:
            command += f" --reference {reference}"
            command += f" --reference-limit {reference_limit}" if reference_limit else ""
        ref_note = f"Copied lines are checked against {ref.name}." if ref else ""
        page = (
            f"# Forms evaluation\n\nModel: `{engine.name}` ({engine.backend}). "
            f"Command: `{command}`. {ref_note}\n\n" + markdown_table([s.row() for s in scores])
        )
        atomic_write_text(out, page)
        raw = json.dumps([s.to_dict() for s in scores], ensure_ascii=False, indent=1)
        atomic_write_text(out.with_suffix(".json"), raw)
        err_console.print(f"[green]saved[/] {out}")


@eval_app.command("music")
def music_command(
    model: Annotated[
        str | None, Opt("--model", "-m", help="A model name or path; default: abc-folk.")
    ] = None,
    tunes: Annotated[int, Opt(min=1, help="Tunes per decoding mode.")] = 100,
    bars: Annotated[int, Opt(min=1, max=64, help="Bars per tune.")] = 16,
    seed: Annotated[int, Opt(help="Seed of the first batch (then +1 per tune).")] = 0,
    unconstrained: Annotated[
        bool, Opt(help="Also measure unconstrained decoding, for comparison.")
    ] = True,
    out: Annotated[Path, Opt("--out", "-o", help="Markdown table to write.")] = Path(
        "docs/music-eval.md"
    ),
) -> None:
    """Tunes for a fixed set of rhythm and key requests, constrained and unconstrained:
    music21 parse rate, bars of the right duration, metre and key adherence, distinct-n,
    and the longest run of bars copied from the abc-folk corpus. The tunes themselves are
    saved beside the table (.abc)."""
    with user_errors():
        from functools import partial

        from rich.progress import Progress

        from musegpt.data.builtin import get_builtin
        from musegpt.fileio import atomic_write_text
        from musegpt.music.compose import music_engine
        from musegpt.music.evaluate import CopyIndex, eval_headers, evaluate_mode
        from musegpt.studio.evaluate import markdown_table

        engine = music_engine(model)
        corpus = get_builtin("abc-folk")
        err_console.print("indexing the abc-folk corpus's bars (for copying)...")
        index = CopyIndex(corpus.documents(corpus.locate()))
        headers = eval_headers(tunes)
        results = []
        modes = [True, False] if unconstrained else [True]
        with Progress(console=err_console) as bar:
            for constrained in modes:
                name = "constrained" if constrained else "unconstrained"
                job = bar.add_task(name, total=len(headers))
                advance = partial(bar.advance, job)
                result = evaluate_mode(
                    engine, headers, index, constrained, bars, seed, progress=advance
                )
                results.append(result)
        rows = [r.table_row() for r in results]
        for row in rows:
            err_console.print(row, highlight=False)
        command = f"musegpt eval music --model {engine.name} --tunes {tunes} --bars {bars}"
        page = (
            f"# Music evaluation\n\nModel: `{engine.name}` ({engine.backend}). "
            f"Command: `{command} --seed {seed}`.\n\n" + markdown_table(rows)
        )
        atomic_write_text(out, page)
        abc = "\n".join(
            t.abc.replace("X:1", f"X:{i + 1}", 1) + f"% {r.mode}\n"
            for r in results
            for i, t in enumerate(r.tunes, start=len(r.tunes) * results.index(r))
        )
        atomic_write_text(out.with_suffix(".abc"), abc)
        err_console.print(f"[green]saved[/] {out} and {out.with_suffix('.abc')}")


@eval_app.command("stories")
def stories_command(
    model: ModelOpt = None,
    limit: Annotated[int, Opt(min=1, help="Premises per language (the set holds 22).")] = 20,
    chapters: Annotated[int, Opt(min=1, max=20, help="Chapters per story.")] = 3,
    chapter_tokens: Annotated[int, Opt(min=16, help="Tokens per chapter.")] = 450,
    candidates: Annotated[int, Opt(min=1, max=8, help="Drafts per chapter.")] = 2,
    steps: Annotated[
        bool, Opt(help="Chapters told in steps (write story --steps); use its own --out.")
    ] = False,
    lang: Annotated[str, Opt(help="Comma-separated languages: en, zh.")] = "en,zh",
    seed: Annotated[int, Opt(help="Seed of the first premise (then +1 each).")] = 1,
    out: Annotated[
        Path,
        Opt("--out", "-o", help="Markdown page whose table is (re)written; rows go to .jsonl."),
    ] = Path("docs/stories-eval.md"),
    plan_only: Annotated[
        bool,
        Opt(help="Plans only (bible and outline, no chapters); rows go to OUT's -plans.jsonl."),
    ] = False,
) -> None:
    """Whole stories on a fixed premise set: plan validity (first draw and after retries),
    protagonist, beat and premise per chapter, repetition, leaked scaffolding, unfinished
    endings, length and seconds per story. Resumable: each story is appended to OUT's .jsonl
    as it is finished, and a run again skips those already there. With --plan-only, each
    field's first-draw validity, validity after retries and seconds per plan."""
    with user_errors():
        from musegpt.engines.registry import open_engine
        from musegpt.fileio import atomic_write_text
        from musegpt.studio import Studio
        from musegpt.studio.story_eval import evaluate, load_rows, premises, run_key, write_table

        langs = [x.strip() for x in lang.split(",") if x.strip()]
        if not langs or any(x not in ("en", "zh") for x in langs):
            raise ValueError(f"--lang takes en and/or zh, comma-separated (got {lang!r})")
        results = out.with_suffix(".jsonl")
        engine = open_engine(model)
        studio = Studio(engine)

        def say(message: str) -> None:
            err_console.print(message, highlight=False)

        if plan_only:
            from musegpt.studio.plan_eval import evaluate_plan_set

            saved = evaluate_plan_set(studio, out, langs, limit, chapters, seed, say)  # type: ignore[arg-type]
            err_console.print(f"[green]saved[/] {saved}")
            return

        for row in evaluate(
            studio, results, langs, limit, chapters, chapter_tokens, candidates, seed,  # type: ignore[arg-type]
            progress=say, steps=steps,
        ):  # fmt: skip
            verdict = row["error"] or f"{row['seconds']} s, plan valid: {row['plan_valid']}"
            say(f"  {verdict}")
        sets = premises()
        asked = {
            run_key(x, p, seed + i, chapters, chapter_tokens)
            for x in langs
            for i, p in enumerate(sets[x][:limit])
        }
        rows = [r for r in load_rows(results) if r["key"] in asked]
        command = (
            f"musegpt eval stories --model {engine.name} --limit {limit} --chapters {chapters} "
            f"--chapter-tokens {chapter_tokens} --candidates {candidates} --lang {lang} "
            f"--seed {seed}" + (" --steps" if steps else "")
        )
        atomic_write_text(out, write_table(out, rows, command))
        err_console.print(f"[green]saved[/] {out} ({len(rows)} stories; rows in {results})")
