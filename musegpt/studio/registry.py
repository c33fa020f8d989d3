"""The studio's tasks, each declared once: its request (fields, defaults, limits) and the
`Studio` call that performs it.

`musegpt write ...`, the server's `POST /v1/studio/{task}` and `musegpt eval studio` all run
a task through `run_task` (or `TASKS[name]`), so a task has one prompt, one set of defaults
and one way of failing wherever it is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

if TYPE_CHECKING:
    from musegpt.forms.form import Form
    from musegpt.studio.studio import Studio
    from musegpt.studio.work import Work

TaskName = Literal[
    "story", "continue", "script", "lyrics", "brainstorm", "describe", "rewrite", "plot-help",
    "poem",
]  # fmt: skip
RhymeBook = Literal["pingshui", "xinyun"]


class TaskRequest(BaseModel):
    """What every task is given: `text`, the premise, topic, subject or passage."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # What `text` means to this task, and an example of it: for the message when it is blank.
    text_is: ClassVar[str] = "the text"
    hint: ClassVar[str] = "say what to write about"
    example: ClassVar[str] = "a night market in the rain"

    text: str = Field(max_length=200_000)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(f"{cls.text_is} is empty; {cls.hint}, e.g. {cls.example!r}")
        return value


class StoryRequest(TaskRequest):
    text_is: ClassVar[str] = "the premise"
    # Empty resumes (or extends, with `more`) the project already in `project`.
    text: str = Field("", max_length=200_000)
    project: Path | None = Field(None, description="story folder; default stories/<premise>")
    chapters: int = Field(3, ge=1, le=200, description="chapters to plan for a new story")
    more: int = Field(0, ge=0, le=200, description="chapters to add to an existing story")
    chapter_tokens: int = Field(450, ge=50, le=4000, description="tokens per chapter")
    candidates: int = Field(
        2, ge=1, le=8, description="drafts per chapter, the best kept; 1 = one draft"
    )
    steps: bool = Field(
        False, description="a new story's chapters told in steps drawn from each beat (slower)"
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return value  # a blank premise is checked against the project folder when run


class ContinueRequest(TaskRequest):
    text_is: ClassVar[str] = "the text to continue"
    hint: ClassVar[str] = "give the start of a text"
    example: ClassVar[str] = "The rain had not stopped for three days when"
    max_tokens: int = Field(400, ge=1, le=100_000, description="tokens to write")


class ScriptRequest(TaskRequest):
    text_is: ClassVar[str] = "the situation"
    example: ClassVar[str] = "two strangers share a bench till dawn"
    title: str = Field("", max_length=200)
    adapter: str = Field(
        "auto", max_length=200, description="default model: auto (by language), none, or a name"
    )


class LyricsRequest(TaskRequest):
    text_is: ClassVar[str] = "the topic"
    example: ClassVar[str] = "leaving home for the city"
    title: str = Field("", max_length=200)


class BrainstormRequest(TaskRequest):
    text_is: ClassVar[str] = "the topic"
    example: ClassVar[str] = "a city under the sea"
    kind: str = Field("ideas", max_length=100, description="titles, names, plot twists…")
    count: int = Field(8, ge=1, le=50, description="how many distinct ideas")


class DescribeRequest(TaskRequest):
    text_is: ClassVar[str] = "the subject"


class RewriteRequest(TaskRequest):
    text_is: ClassVar[str] = "the passage"
    hint: ClassVar[str] = "give the passage to rewrite"
    example: ClassVar[str] = "The train was late, so we walked home."
    style: str = Field("", max_length=2000, description="a style or tone to aim for")
    sample: str = Field("", max_length=20_000, description="a sample of the style")
    alternatives: int = Field(1, ge=1, le=10, description="how many distinct versions")


class PlotHelpRequest(TaskRequest):
    text_is: ClassVar[str] = "the story so far"
    hint: ClassVar[str] = "tell it in a sentence or two"
    example: ClassVar[str] = "A girl finds a key that opens every door in town."
    conflict: str = Field(max_length=2000, description="where the story is stuck")
    count: int = Field(4, ge=1, le=20, description="how many ways forward")


class PoemRequest(TaskRequest):
    text_is: ClassVar[str] = "the topic"
    example: ClassVar[str] = "autumn rain"
    form: str = Field("haiku", max_length=200, description="a form's name or a YAML form file")
    rhymes: RhymeBook | None = Field(None, description="Chinese rhyme book")
    strict: bool | None = Field(None, description="Chinese: enforce 平仄")
    attempts: int = Field(5, ge=1, le=50, description="tries before giving up")
    adapter: str = Field(
        "auto", max_length=200, description="default model: auto (by language), none, or a name"
    )
    _form: Form | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _known_form(self) -> PoemRequest:
        """An unknown form (or a bad form file) is a bad request, found before any writing."""
        from musegpt.forms.form import get_form

        if self.rhymes is None:
            self._form = get_form(self.form, strict=self.strict)
        else:
            self._form = get_form(self.form, rhyme_system=self.rhymes, strict=self.strict)
        return self

    def chosen_form(self) -> Form:
        """The form named, with the rhyme book and strictness asked for."""
        assert self._form is not None  # set by validation
        return self._form


R = TypeVar("R", bound=TaskRequest)


@dataclass(frozen=True)
class TaskSpec(Generic[R]):
    """One task: what it takes, and the `Studio` call that performs it."""

    name: TaskName
    request: type[R]
    call: Callable[[Studio, R, dict[str, Any]], Work]

    def perform(self, studio: Studio, request: TaskRequest, **overrides: Any) -> Work:
        """Run the task; `overrides` are `SamplingParams` fields for this run (e.g. seed)."""
        if not isinstance(request, self.request):
            raise TypeError(f"{self.name} takes a {self.request.__name__}")
        return self.call(studio, request, overrides)


def _story(studio: Studio, r: StoryRequest, o: dict[str, Any]) -> Work:
    return studio.story(
        r.text, r.project, r.chapters, r.more, r.chapter_tokens, r.candidates, r.steps, **o
    )


def _continue(studio: Studio, r: ContinueRequest, o: dict[str, Any]) -> Work:
    return studio.continue_text(r.text, r.max_tokens, **o)


def _script(studio: Studio, r: ScriptRequest, o: dict[str, Any]) -> Work:
    return studio.script(r.text, r.title, r.adapter, **o)


def _lyrics(studio: Studio, r: LyricsRequest, o: dict[str, Any]) -> Work:
    return studio.lyrics(r.text, r.title, **o)


def _brainstorm(studio: Studio, r: BrainstormRequest, o: dict[str, Any]) -> Work:
    return studio.brainstorm(r.text, r.kind, r.count, **o)


def _describe(studio: Studio, r: DescribeRequest, o: dict[str, Any]) -> Work:
    return studio.describe(r.text, **o)


def _rewrite(studio: Studio, r: RewriteRequest, o: dict[str, Any]) -> Work:
    return studio.rewrite(r.text, r.style, r.sample, r.alternatives, **o)


def _plot_help(studio: Studio, r: PlotHelpRequest, o: dict[str, Any]) -> Work:
    return studio.plot_help(r.text, r.conflict, r.count, **o)


def _poem(studio: Studio, r: PoemRequest, o: dict[str, Any]) -> Work:
    return studio.poem(r.text, r.chosen_form(), r.attempts, r.adapter, **o)


def _specs() -> dict[str, TaskSpec[Any]]:
    specs: list[TaskSpec[Any]] = [
        TaskSpec("story", StoryRequest, _story),
        TaskSpec("continue", ContinueRequest, _continue),
        TaskSpec("script", ScriptRequest, _script),
        TaskSpec("lyrics", LyricsRequest, _lyrics),
        TaskSpec("brainstorm", BrainstormRequest, _brainstorm),
        TaskSpec("describe", DescribeRequest, _describe),
        TaskSpec("rewrite", RewriteRequest, _rewrite),
        TaskSpec("plot-help", PlotHelpRequest, _plot_help),
        TaskSpec("poem", PoemRequest, _poem),
    ]
    return {spec.name: spec for spec in specs}


TASKS: dict[str, TaskSpec[Any]] = _specs()
assert list(TASKS) == list(get_args(TaskName))  # the Literal and the registry name the same


def task_spec(name: str) -> TaskSpec[Any]:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def task_request(name: str, fields: Mapping[str, Any]) -> TaskRequest:
    """The task's request from `fields`, checked (a pydantic `ValidationError` names the
    field); fields left out take the task's defaults."""
    request: TaskRequest = task_spec(name).request.model_validate(dict(fields))
    return request


def run_task(studio: Studio, name: str, fields: Mapping[str, Any], **overrides: Any) -> Work:
    """Run task `name` with request `fields` on `studio`; `overrides` are `SamplingParams`
    fields for this run."""
    return task_spec(name).perform(studio, task_request(name, fields), **overrides)
