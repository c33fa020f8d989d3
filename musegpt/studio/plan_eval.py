"""`musegpt eval stories --plan-only`: story plans (bible and outline, no chapters) on the
fixed premise set, measured for validity on the first draw of every field and after the
bounded retries, and for time. A plan costs a few seconds where a story costs a minute,
so the planning side can be measured on every premise.

Each plan's row is appended to a JSONL file as soon as it is made (a stopped run continues
where it left off); the table is rewritten between its own markers in the page.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from musegpt.fileio import atomic_write_text
from musegpt.studio.cast import CHECKS
from musegpt.studio.story import StoryProject, check_premise, plan_bible, plan_outline
from musegpt.studio.story_eval import (
    load_rows,
    mean,
    page_with_table,
    plan_valid,
    premise_order,
    share,
)
from musegpt.studio.studio import Studio
from musegpt.studio.tasks import StudioError
from musegpt.studio.text import Lang

PLAN_TABLE_START, PLAN_TABLE_END = "<!-- eval plans: start -->", "<!-- eval plans: end -->"
BIBLE_FIELDS = ("title", "setting", "style", "characters", "synopsis")
CAST_KEYS = ("cast taken back", "cast")  # their counts' keys in a plan's redraws


@dataclass
class PlanScore:
    lang: Lang
    premise: str
    seed: int
    chapters: int
    error: str = ""  # the clear failure, when the plan was refused
    # Fields whose first call (the first model call drawing it) gave a kept value; the
    # characters when every line drawn was kept, the outline when every beat's was.
    first_draw: dict[str, bool] = field(default_factory=dict)
    plan_valid: bool = False  # the kept plan passes every check
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    calls: int = 0  # model calls the plan took
    redraws: dict[str, int] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)  # the bible and the beats

    @property
    def key(self) -> str:
        return f"plan|{self.lang}|{self.premise}|{self.seed}|{self.chapters}"


def evaluate_plan(studio: Studio, lang: Lang, premise: str, seed: int, chapters: int) -> PlanScore:
    """One story plan from `premise` (bible, then `chapters` beats), made and measured."""
    score = PlanScore(lang, premise, seed, chapters)
    studio.lang = lang
    writer = studio.writer(premise, seed=seed)
    wall, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as folder:
        project = StoryProject(Path(folder), premise, lang, chapters=chapters)
        redraws = project.meta.setdefault("redraws", {})
        try:
            check_premise(studio.engine, premise)
            project.bible = plan_bible(writer, premise, redraws)
            plan_outline(writer, project, chapters)
        except StudioError as err:
            score.error = str(err)
    score.seconds = round(time.perf_counter() - wall, 2)
    score.cpu_seconds = round(time.process_time() - cpu, 2)
    score.calls = writer.calls
    score.redraws = dict(redraws)
    bible = project.bible
    score.first_draw = {f: bible is not None and not redraws.get(f, 0) for f in BIBLE_FIELDS}
    score.first_draw["outline"] = len(project.scenes) == chapters and not redraws.get("outline")
    score.plan_valid = not score.error and plan_valid(project)
    score.plan = {
        "bible": asdict(bible) if bible is not None else None,
        "beats": [s.beat for s in project.scenes],
    }
    return score


def evaluate_plans(
    studio: Studio,
    results: Path,
    langs: list[Lang],
    limit: int,
    chapters: int,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Each premise's plan not yet in `results` made, measured and appended there (premise
    `i` with seed `seed + i`, as `musegpt eval stories`); yields the new rows."""
    done = {row["key"] for row in load_rows(results)}
    results.parent.mkdir(parents=True, exist_ok=True)
    for i, lang, premise in premise_order(langs, limit):
        if PlanScore(lang, premise, seed + i, chapters).key in done:
            continue
        if progress is not None:
            progress(f"{lang} {i + 1}/{limit}: {premise}")
        score = evaluate_plan(studio, lang, premise, seed + i, chapters)
        row = {"key": score.key, **asdict(score)}
        with results.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        yield row


def plan_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table with one column per language: plan validity and time."""
    langs = sorted({r["lang"] for r in rows}, key=["en", "zh"].index)
    table: dict[str, list[str]] = {}
    for lang in langs:
        mine = [r for r in rows if r["lang"] == lang]
        first = [r["first_draw"] for r in mine]
        column = {
            "plans": str(len(mine)),
            "refused with a clear error": share([bool(r["error"]) for r in mine]),
            "whole plan valid on the first draw": share([all(f.values()) for f in first]),
            "bible valid on the first draw": share(
                [all(f[k] for k in BIBLE_FIELDS) for f in first]
            ),
            **{
                f"  {k} on the first draw": share([f[k] for f in first])
                for k in (*BIBLE_FIELDS, "outline")
            },
            "plan valid after retries": share([r["plan_valid"] for r in mine]),
            # The cast checks (cast.py): tokens taken back while a line was drawn, and
            # lines refused once drawn (what the steering missed), by check.
            **{
                f"  cast {check}: taken back / lines refused": "{} / {}".format(
                    *(sum(r["redraws"].get(f"{k}: {check}", 0) for r in mine) for k in CAST_KEYS)
                )
                for check in CHECKS
            },
            "model calls per plan": mean([r["calls"] for r in mine], 1),
            "seconds per plan (wall)": mean([r["seconds"] for r in mine], 1),
            "CPU seconds per plan": mean([r["cpu_seconds"] for r in mine], 1),
        }
        for name, value in column.items():
            table.setdefault(name, []).append(value)
    head = "| measure | " + " | ".join(langs) + " |\n|---|" + "---|" * len(langs) + "\n"
    return head + "".join(f"| {k} | " + " | ".join(v) + " |\n" for k, v in table.items())


def write_plan_table(page: Path, rows: list[dict[str, Any]], command: str) -> str:
    """The plan table put between its markers in `page` (the rest kept), or appended to
    it under a heading; returns the page's text."""
    return page_with_table(
        page, PLAN_TABLE_START, PLAN_TABLE_END, plan_table(rows), command, "## Plans\n\n"
    )


def evaluate_plan_set(
    studio: Studio,
    page: Path,
    langs: list[Lang],
    limit: int,
    chapters: int,
    seed: int = 1,
    say: Callable[[str], None] | None = None,
) -> str:
    """`musegpt eval stories --plan-only`: the plans not yet in `page`'s -plans.jsonl made
    and appended there, then the plan table rewritten in `page`; says what was saved."""
    results = page.with_name(page.stem + "-plans.jsonl")
    for row in evaluate_plans(studio, results, langs, limit, chapters, seed, say):
        if say is not None:
            first = ", ".join(k for k, ok in row["first_draw"].items() if not ok) or "none"
            verdict = row["error"] or f"valid: {row['plan_valid']}; redrawn: {first}"
            say(f"  {row['seconds']} s — {verdict}")
    asked = {PlanScore(x, p, seed + i, chapters).key for i, x, p in premise_order(langs, limit)}
    rows = [r for r in load_rows(results) if r["key"] in asked]
    command = (
        f"musegpt eval stories --plan-only --model {studio.engine.name} --limit {limit} "
        f"--chapters {chapters} --lang {','.join(langs)} --seed {seed}"
    )
    atomic_write_text(page, write_plan_table(page, rows, command))
    return f"{page} ({len(rows)} plans; rows in {results})"
