"""`musegpt eval studio`: every task on a fixed prompt set, in English and Chinese, scored
for diversity (distinct-1/2), repetition, structural validity, length and time."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from typing import Any

from musegpt.studio.registry import run_task
from musegpt.studio.script import fountain_elements
from musegpt.studio.studio import Studio
from musegpt.studio.tasks import CHORUS, StudioError
from musegpt.studio.text import SENTENCE_END, Lang, distinct_n, similarity, units
from musegpt.studio.work import Work

# Template words that must never reach a writer's text.
SCAFFOLDING = [
    "Subject:", "Description:", "Original:", "Rewritten:", "Premise:", "Topic:", "Kind:",
    "Story so far:", "Ways forward:", "Notes for the novel", "This chapter:", "对象：", "描写：",
    "原文：", "改写：", "主题：", "类型：", "故事梗概：", "前情提要：", "本章内容：", "写作笔记",
]  # fmt: skip
IDEAS = 5


def prompts() -> dict[str, list[dict[str, str]]]:
    text = files("musegpt.studio").joinpath("data/eval_prompts.json").read_text("utf-8")
    data: dict[str, list[dict[str, str]]] = json.loads(text)
    return data


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of a text's n-grams that repeat an earlier one (0 = no repetition)."""
    words = units(text)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def valid(work: Work) -> bool:
    """The task's structure holds, and no scaffolding leaked."""
    if not work.text.strip() or any(s in work.text for s in SCAFFOLDING):
        return False
    if work.task == "script":
        elements = fountain_elements(work.text)
        return elements["Slug"] >= 1 and elements["Dialog"] >= 2
    if work.task == "lyrics":
        chorus = [p for p in work.parts if p.startswith(f"[{CHORUS[work.lang]}]")]
        return len(chorus) >= 2 and len(set(chorus)) == 1
    if work.task in ("brainstorm", "plot-help"):
        pairs = [(a, b) for i, a in enumerate(work.parts) for b in work.parts[i + 1 :]]
        return len(work.parts) == IDEAS and all(similarity(a, b) <= 0.5 for a, b in pairs)
    if work.task == "story":
        return len(work.parts) >= 1 and all(p.strip() for p in work.parts)
    return bool(SENTENCE_END.search(work.text[-3:]))


@dataclass
class TaskScore:
    task: str
    lang: Lang
    runs: int = 0
    failures: int = 0  # the task raised a clear StudioError instead of returning
    valid: int = 0
    texts: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        lengths = [len(units(t)) for t in self.texts]
        return {
            "task": self.task,
            "lang": self.lang,
            "prompts": self.runs,
            "valid": round(self.valid / self.runs, 3) if self.runs else 0.0,
            "errors": self.failures,
            "distinct-1": round(distinct_n(self.texts, 1), 3),
            "distinct-2": round(distinct_n(self.texts, 2), 3),
            "repetition": round(statistics.mean(map(repetition_rate, self.texts)), 3)
            if self.texts
            else 0.0,
            "length": round(statistics.mean(lengths), 1) if lengths else 0.0,
            "seconds": round(statistics.mean(self.seconds), 2) if self.seconds else 0.0,
        }


# Each evaluated task's request from one prompt-set item (the registry's defaults for the
# rest). Poems are measured by `musegpt eval forms`, continuing by the story task.
PROMPT_FIELDS: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
    "story": lambda item: {"text": item["topic"], "chapters": 1, "chapter_tokens": 160},
    "script": lambda item: {"text": f"{item['topic']}: {item['conflict']}"},
    "lyrics": lambda item: {"text": item["topic"]},
    "brainstorm": lambda item: {"text": item["topic"], "kind": item["kind"], "count": IDEAS},
    "describe": lambda item: {"text": item["topic"]},
    "rewrite": lambda item: {"text": item["passage"], "style": item["style"]},
    "plot-help": lambda item: {"text": item["topic"], "conflict": item["conflict"], "count": IDEAS},
}
EVALUATED_TASKS = list(PROMPT_FIELDS)


def evaluate_task(studio: Studio, task: str, item: dict[str, str], seed: int) -> Work:
    """`task` on one prompt-set item, run through the task registry like any other caller."""
    fields = PROMPT_FIELDS[task](item)
    if task != "story":
        return run_task(studio, task, fields, seed=seed)
    with tempfile.TemporaryDirectory() as folder:  # a fresh project each time
        return run_task(studio, task, {**fields, "project": folder}, seed=seed)


def evaluate(
    studio: Studio,
    tasks: list[str] = EVALUATED_TASKS,
    langs: list[Lang] = ["en", "zh"],  # noqa: B006 - never mutated
    per_task: int = 20,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Iterator[TaskScore]:
    """One score per (task, language), yielded as each is finished."""
    data = prompts()
    for lang in langs:
        studio.lang = lang
        for task in tasks:
            score = TaskScore(task, lang)
            for i, item in enumerate(data[lang][:per_task]):
                if progress is not None:
                    progress(f"{task} [{lang}] {i + 1}/{min(per_task, len(data[lang]))}")
                start = time.perf_counter()
                score.runs += 1
                try:
                    work = evaluate_task(studio, task, item, seed + i)
                except StudioError:
                    score.failures += 1
                    continue
                score.seconds.append(time.perf_counter() - start)
                score.texts.append(work.text)
                score.valid += valid(work)
            yield score


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def score_dicts(scores: list[TaskScore]) -> list[dict[str, Any]]:
    return [asdict(s) | {"row": s.row()} for s in scores]
