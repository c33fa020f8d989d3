"""`Studio`: the writing tasks on one engine — the Python API. The CLI, the server and the
evaluations reach these methods through one registry of tasks (`musegpt.studio.registry`).

from musegpt.studio import Studio
studio = Studio()                      # the embedded default model
work = studio.story("a robot who discovers love", project="stories/robot", seed=1)
print(work.markdown())
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from musegpt.engines.base import Engine, with_overrides
from musegpt.forms.form import Form
from musegpt.generation.params import SamplingParams
from musegpt.studio import script as script_task
from musegpt.studio import story as story_task
from musegpt.studio import tasks
from musegpt.studio.text import Lang, detect_lang
from musegpt.studio.work import Work
from musegpt.studio.writer import Sink, Writer

# Defaults tuned for small base models: some randomness, a cut tail, a light penalty on
# repeating what was already written.
STUDIO_DEFAULTS: dict[str, Any] = {
    "temperature": 0.8,
    "top_p": 0.95,
    "top_k": 64,
    "frequency_penalty": 0.3,
    "presence_penalty": 0.1,
    "max_new_tokens": 1000,  # a ceiling per model call; each task sets its own budget below it
}


# DRY over the whole text and XTC, for lyrics: on the default model they cut repetition
# and raise distinct-n with every structure check passing (docs/sampling.md, "Measured").
# Every other task keeps plain sampling: with them, 1 to 2 of 10 stories, scripts,
# brainstorms and plot-help lists failed their structure, and descriptions gained nothing.
TASK_SAMPLING: dict[str, dict[str, Any]] = {
    "lyrics": {"dry_multiplier": 0.8, "dry_penalty_last_n": -1, "xtc_probability": 0.5},
}


def studio_params(params: SamplingParams | None = None, **overrides: Any) -> SamplingParams:
    """The studio's defaults, then `params`' explicitly set fields, then `overrides`."""
    chosen = params.model_dump(exclude_unset=True) if params is not None else {}
    return with_overrides(None, {**STUDIO_DEFAULTS, **chosen, **overrides})


class Studio:
    def __init__(
        self,
        engine: Engine | str | Path | None = None,
        params: SamplingParams | None = None,
        lang: Lang | None = None,
        sink: Sink | None = None,
        status: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(engine, Engine):
            from musegpt.engines.registry import open_engine

            engine = open_engine(engine)
        self.engine = engine
        self.params = studio_params(params)
        # The fields the user set: they win over a task's own defaults (the registry's).
        self.chosen = frozenset(params.model_fields_set) if params is not None else frozenset()
        self.lang = lang
        self.sink = sink
        self.status = status

    def task_defaults(self, task: str) -> dict[str, Any]:
        """The task's own sampling defaults (`TASK_SAMPLING`) that this studio's user did
        not set."""
        return {k: v for k, v in TASK_SAMPLING.get(task, {}).items() if k not in self.chosen}

    def writer(self, text: str, task: str = "", **overrides: Any) -> Writer:
        """A writer in the language asked for, or else the one `text` is written in, with
        `task`'s sampling defaults under `overrides`."""
        overrides = {**self.task_defaults(task), **overrides}
        params = with_overrides(self.params, overrides) if overrides else self.params
        lang = self.lang or detect_lang(text)
        writer = Writer(self.engine, params, lang, self.sink, self.status)
        writer.keep_to(text)
        return writer

    def _done(self, work: Work, writer: Writer) -> Work:
        work.meta = {"model": self.engine.name, "seed": writer.params.seed, **work.meta}
        return work

    def story(
        self,
        premise: str = "",
        project: str | Path | None = None,
        scenes: int = 3,
        more: int = 0,
        scene_tokens: int = 450,
        candidates: int = story_task.CANDIDATES,
        steps: bool = False,
        **overrides: Any,
    ) -> Work:
        """Start (from `premise`), resume or extend (`more` chapters) a story project; each
        chapter is the best of `candidates` drafts, told in steps with `steps` (new stories)."""
        folder = Path(project) if project else Path("stories") / slug(premise)
        writer = self.writer(premise, **overrides)
        work = story_task.write_story(
            writer, premise, folder, scenes, more, scene_tokens, candidates, steps
        )
        return self._done(work, writer)

    def continue_text(self, text: str, max_new_tokens: int = 400, **overrides: Any) -> Work:
        writer = self.writer(text, **overrides)
        return self._done(story_task.continue_text(writer, text, max_new_tokens), writer)

    def script(
        self, situation: str, title: str = "", adapter: str = "auto", **overrides: Any
    ) -> Work:
        """A scene in Fountain; `adapter`: on the default model, "auto" (the shipped one
        for scripts in the language, if any: none yet), "none" or a name ("stage")."""
        writer = self.writer(situation, **overrides)
        return self._done(script_task.script(writer, situation, title, adapter=adapter), writer)

    def lyrics(self, topic: str, title: str = "", **overrides: Any) -> Work:
        writer = self.writer(topic, "lyrics", **overrides)
        return self._done(tasks.lyrics(writer, topic, title), writer)

    def brainstorm(self, topic: str, kind: str = "ideas", count: int = 8, **overrides: Any) -> Work:
        writer = self.writer(topic + kind, **overrides)
        return self._done(tasks.brainstorm(writer, topic, kind, count), writer)

    def describe(self, subject: str, **overrides: Any) -> Work:
        writer = self.writer(subject, **overrides)
        return self._done(tasks.describe(writer, subject), writer)

    def rewrite(
        self,
        text: str,
        style: str = "",
        sample: str = "",
        alternatives: int = 1,
        **overrides: Any,
    ) -> Work:
        writer = self.writer(text, **overrides)
        return self._done(tasks.rewrite(writer, text, style, sample, alternatives), writer)

    def poem(
        self,
        topic: str,
        form: Form | str = "haiku",
        attempts: int = 5,
        adapter: str = "auto",
        **overrides: Any,
    ) -> Work:
        """A poem that passes its form's checker (or a StudioError after `attempts`); `form`
        is a name (`musegpt form list`) or a `musegpt.forms.get_form(...)` result; `adapter`:
        on the default model, the shipped one for the language ("auto"), "none" or a name."""
        from musegpt.studio.poem import poem

        writer = self.writer(topic, **overrides)
        return self._done(poem(writer, topic, form, attempts, adapter), writer)

    def plot_help(self, story: str, conflict: str, count: int = 4, **overrides: Any) -> Work:
        writer = self.writer(story + conflict, **overrides)
        return self._done(tasks.plot_help(writer, story, conflict, count), writer)

    def draw(self, prompt: str, model: str = "icons", **options: Any) -> list[Any]:
        """Pictures (PIL images) for `prompt` from an image model (`musegpt draw`); `options`
        are `ImageModel.draw`'s: n, size, seed, style, temperature, top_k, guidance."""
        from musegpt.images import load_image_model

        return load_image_model(model).draw(prompt, **options)


def slug(text: str, most: int = 40) -> str:
    """A folder name from a premise: letters, digits and Han characters joined by '-'."""
    import re

    words = re.findall(r"[\w\u4e00-\u9fff]+", text.lower())
    name = "-".join(words)[:most].strip("-")
    return name or "story"
