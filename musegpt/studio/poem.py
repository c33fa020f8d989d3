"""`poem`: a poem in a named form, guaranteed — constrained decoding keeps syllables or
characters, rhyme and (in strict mode) tones, and the checker must pass before a poem is
returned; after a bounded number of attempts the task fails with the checker's reasons."""

from __future__ import annotations

import random

from musegpt.adapters.choice import adapted_engine
from musegpt.engines.base import EngineError
from musegpt.forms import (
    Form,
    FormError,
    FormReport,
    PoemFormError,
    check,
    get_form,
    model_generate_fn,
    write_poem,
)
from musegpt.forms.writer import suggested_max_new_tokens
from musegpt.studio.tasks import StudioError
from musegpt.studio.work import Work
from musegpt.studio.writer import Writer

# A plain title line: base models continue it with a poem more readily than an instruction.
POEM_PROMPT = {"en": '{form} — "{topic}"\n\n', "zh": "《{topic}》（{form}）\n"}


class PoemError(StudioError):
    """No attempt passed the form's checker; `text` and `report` are the last attempt's."""

    def __init__(self, message: str, text: str, report: FormReport) -> None:
        super().__init__(message)
        self.text = text
        self.report = report


def poem(
    writer: Writer, topic: str, form: Form | str, attempts: int = 5, adapter: str = "auto"
) -> Work:
    """`adapter`: on the default model, "auto" writes with the shipped adapter for the
    form's language (Chinese: `tang`), "none" without, or an adapter's name."""
    try:
        form = get_form(form) if isinstance(form, str) else form
        writer.engine = adapted_engine(writer.engine, "poem", form.language, adapter)
    except (FormError, EngineError) as err:
        raise StudioError(str(err)) from None
    writer.lang = "zh" if form.language == "zh" else "en"
    writer.say(f"Writing a {form.display_name} ({form.describe()})…")
    params = writer.call_params(suggested_max_new_tokens(form), stop=[])
    prompt = POEM_PROMPT[writer.lang].format(form=form.display_name, topic=topic.strip())
    generate = model_generate_fn(writer.engine, params)
    # No seed asked for: a fresh one, reported in the work's meta so the poem can be redone.
    seed = params.seed if params.seed is not None else random.randrange(2**31)
    # A remote model sends text only: its poems are checked, not steered, token by token.
    steer = writer.engine.tokenizer if writer.steers else None
    try:
        result = write_poem(
            generate, form, topic, tokenizer=steer, prompt=prompt,
            attempts=attempts, seed=seed,
        )  # fmt: skip
    except PoemFormError as err:
        text, report = err.attempts[-1]
        raise PoemError(str(err), text, report) from None
    except FormError as err:
        raise StudioError(str(err)) from None
    writer.show(result.text + "\n")
    assert check(result.text, form).passed  # write_poem returns only passing poems
    meta = {"form": form.display_name, "attempt": result.attempt, "poem seed": result.seed}
    if getattr(writer.engine, "adapter", None):
        meta["adapter"] = writer.engine.name
    return Work("poem", topic.strip() or form.display_name, writer.lang, result.text, meta=meta)
