"""`write_poem`: generate under the form's constraints, check every result, and return only
a poem that passes — or raise `FormError` after a bounded number of attempts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from musegpt.forms.checker import FormReport, check
from musegpt.forms.form import Form, FormError, get_form
from musegpt.generation.processors import LogitsProcessor
from musegpt.tokenizer.base import EOT, Tokenizer

if TYPE_CHECKING:
    from musegpt.forms.english import Lexicon
    from musegpt.generation.params import SamplingParams

# (prompt, constraints, seed) -> the generated text (without the prompt)
GenerateFn = Callable[[str, list[LogitsProcessor], int], str]


@dataclass(frozen=True)
class Poem:
    text: str
    form: Form
    report: FormReport
    attempt: int  # 1-based: which attempt passed
    seed: int  # the seed that produced it


class PoemFormError(FormError):
    """Every attempt failed the checker; `attempts` holds each text and its report."""

    def __init__(self, message: str, attempts: list[tuple[str, FormReport]]) -> None:
        super().__init__(message)
        self.attempts = attempts


def default_prompt(form: Form, topic: str = "") -> str:
    """A plain prompt: the topic as a title line (models trained on poems see this shape)."""
    topic = topic.strip()
    if form.language == "zh":
        return f"{topic}\n" if topic else ""
    return f"{topic}\n\n" if topic else ""


def clean_output(text: str) -> str:
    """The poem in a generation: up to any end-of-text marker, without surrounding blank
    space."""
    text = text.split(EOT, 1)[0]
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


def write_poem(
    generate: GenerateFn,
    form: Form | str,
    topic: str = "",
    *,
    tokenizer: Tokenizer | None = None,
    prompt: str | None = None,
    attempts: int = 5,
    seed: int = 0,
    lexicon: Lexicon | None = None,
    extra_constraints: Sequence[LogitsProcessor] = (),
) -> Poem:
    """A poem in `form` about `topic`.

    `generate(prompt, constraints, seed)` writes a continuation of `prompt` with the given
    logits processors. With `tokenizer` (the model's), decoding is constrained to the form
    (see `form_constraints`); without one the text is only checked. Attempt k uses seed
    `seed + k`. The first text that passes `check` is returned; after `attempts` failures
    `FormError` (a `PoemFormError` carrying every attempt) is raised — a text in the wrong
    form is never returned.
    """
    form = get_form(form) if isinstance(form, str) else form
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    constraints: list[LogitsProcessor] = list(extra_constraints)
    if tokenizer is not None:
        from musegpt.forms.constraints import form_constraints

        constraints = form_constraints(form, tokenizer, lexicon=lexicon) + constraints
    if prompt is None:
        prompt = default_prompt(form, topic)
    tried: list[tuple[str, FormReport]] = []
    for attempt in range(attempts):
        text = clean_output(generate(prompt, list(constraints), seed + attempt))
        report = check(text, form)
        if report.passed:
            return Poem(text, form, report, attempt + 1, seed + attempt)
        tried.append((text, report))
    last = tried[-1][1]
    raise PoemFormError(
        f"no {form.display_name} after {attempts} attempt(s); the last failed because "
        + "; ".join(last.reasons),
        tried,
    )


class _Writer(Protocol):
    """What `model_generate_fn` needs: a MuseGPT engine (or anything shaped like one)."""

    def generate(
        self,
        prompt: str,
        params: SamplingParams | None = None,
        constraints: Sequence[LogitsProcessor] = (),
        **overrides: Any,
    ) -> str: ...


def model_generate_fn(
    model: _Writer, params: SamplingParams | None = None, **overrides: Any
) -> GenerateFn:
    """A `GenerateFn` for an object with `generate(prompt, params, constraints, **overrides)`
    (a MuseGPT engine); each call sets the seed."""

    def generate(prompt: str, constraints: list[LogitsProcessor], seed: int) -> str:
        return model.generate(prompt, params, constraints, **{**overrides, "seed": seed})

    return generate


def suggested_max_new_tokens(form: Form) -> int:
    """Enough tokens for the form even one character (or byte) per token."""
    if form.language == "zh":
        return sum(b.decode_high() * 3 + 3 for b in form.budgets) + 2
    return sum(b.decode_high() * 8 + 12 for b in form.budgets) + 2
