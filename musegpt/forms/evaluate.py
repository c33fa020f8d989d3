"""`musegpt eval forms`: how well a model writes poems in exact forms, with and without the
form constraints.

For every form and every topic (a fixed list, `data/topics.yaml`: English topics for English
forms, Chinese ones for Chinese forms) the model writes one poem under the form's
constraints and one without them, from the same prompt (the one `musegpt write poem` uses),
seed and sampling settings, and the checker judges both. Measured per form:

* pass rate, constrained (one attempt, no retries: what the constraints alone guarantee) and
  unconstrained (with twice the tokens the constrained poems took, cut to the form's number
  of lines: a generous baseline that need not know where to stop);
* seconds per poem, constrained and unconstrained;
* distinct-2 across the constrained poems (word bigrams in English, character bigrams in
  Chinese);
* copied lines: the share of the constrained poems' lines that occur verbatim (ignoring
  case, spaces and punctuation) as a line of a reference corpus — the model's training
  text, or any corpus given.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from musegpt.forms.checker import check, split_lines
from musegpt.forms.form import Form, get_form
from musegpt.forms.writer import clean_output, suggested_max_new_tokens
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import LogitsProcessor
from musegpt.tokenizer.base import EOT, Tokenizer

TOPICS_FILE = Path(__file__).parent / "data" / "topics.yaml"
DEFAULT_FORMS = ["haiku", "limerick", "shakespearean-sonnet", "wujue", "qilu"]
MIN_REFERENCE_CHARS = 1  # lines shorter than this (after normalising) are never "copied"


class _Completion(Protocol):
    text: str
    token_ids: list[int]


class PoemEngine(Protocol):
    """What the evaluation needs of an engine (`musegpt.engines.base.Engine` has it)."""

    @property
    def tokenizer(self) -> Tokenizer: ...

    def complete(
        self,
        prompts: str | Sequence[str],
        params: SamplingParams | None = None,
        constraints: Sequence[LogitsProcessor] = (),
        **overrides: Any,
    ) -> Sequence[_Completion]: ...


def load_topics(language: str, count: int | None = None) -> list[str]:
    """The first `count` evaluation topics of a language ("en" or "zh")."""
    import yaml

    data = yaml.safe_load(TOPICS_FILE.read_text(encoding="utf-8"))
    topics = [str(t) for t in data[language]]
    if count is not None:
        if count > len(topics):
            raise ValueError(f"only {len(topics)} {language} topics are available (asked {count})")
        topics = topics[:count]
    return topics


# ---------------------------------------------------------------- copied lines


_NOT_WORD = re.compile(r"[\W_]+")


def normal_line(line: str) -> str:
    """A line as compared for copying: NFKC, lower case, without spaces or punctuation."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", line).lower())


def verse_lines(text: str) -> Iterator[str]:
    """The lines of a text as verse: newline-separated, and Chinese lines also cut at
    sentence punctuation (so 床前明月光，疑是地上霜。 gives two lines)."""
    for raw in text.split("\n"):
        yield from re.split(r"[，。！？；]", raw)


@dataclass
class Reference:
    """The lines of a reference corpus, normalised, for the copied-line rate."""

    name: str
    lines: set[str] = field(default_factory=set)

    @classmethod
    def from_texts(cls, name: str, texts: Iterable[str]) -> Reference:
        ref = cls(name)
        for text in texts:
            for line in verse_lines(text):
                key = normal_line(line)
                if len(key) >= MIN_REFERENCE_CHARS:
                    ref.lines.add(key)
        return ref

    def copied(self, line: str) -> bool:
        key = normal_line(line)
        return len(key) >= MIN_REFERENCE_CHARS and key in self.lines


def load_reference(spec: str, limit: int | None = None) -> Reference:
    """A reference corpus: a prepared corpus folder (its training split, decoded), a text
    file, or comma-separated built-in corpus names (the first `limit` documents of each, as
    `musegpt prepare --limit` reads them)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        from musegpt.data.dataset import PreparedCorpus

        corpus = PreparedCorpus.open(path)
        ids = corpus.tokens("train").tolist()
        text = corpus.tokenizer.decode(ids)
        return Reference.from_texts(f"{path} (training split)", text.split(EOT))
    if path.is_file():
        return Reference.from_texts(str(path), [path.read_text(encoding="utf-8")])
    import itertools

    from musegpt.data.builtin import get_builtin

    texts: list[Iterable[str]] = []
    for name in [n.strip() for n in spec.split(",") if n.strip()]:
        builtin = get_builtin(name)
        docs = builtin.documents(builtin.locate())
        texts.append(itertools.islice(docs, limit) if limit else docs)
    label = spec if limit is None else f"{spec} (first {limit} documents each)"
    return Reference.from_texts(label, itertools.chain.from_iterable(texts))


# ---------------------------------------------------------------- scoring


def first_poem(text: str, form: Form) -> str:
    """An unconstrained generation cut to a poem: its first lines (as the checker counts
    them, blank lines skipped), as many as the form has."""
    lines, _ = split_lines(clean_output(text), form)
    return "\n".join(lines[: form.lines])


@dataclass
class FormScore:
    form: str
    language: str
    topics: int
    constrained_pass: float
    unconstrained_pass: float
    seconds_constrained: float  # per poem
    seconds_unconstrained: float
    tokens_constrained: float  # generated tokens per poem
    distinct2: float  # across the constrained poems
    copied_lines: float | None  # share of constrained lines found in the reference
    poems: list[str] = field(default_factory=list)  # the constrained poems
    failures: list[str] = field(default_factory=list)  # checker reasons, constrained

    def row(self) -> dict[str, str]:
        copied = "n/a" if self.copied_lines is None else f"{self.copied_lines:.1%}"
        return {
            "form": self.form,
            "topics": str(self.topics),
            "pass (constrained)": f"{self.constrained_pass:.0%}",
            "pass (unconstrained)": f"{self.unconstrained_pass:.0%}",
            "s/poem (constrained)": f"{self.seconds_constrained:.2f}",
            "s/poem (unconstrained)": f"{self.seconds_unconstrained:.2f}",
            "tokens/poem": f"{self.tokens_constrained:.0f}",
            "distinct-2": f"{self.distinct2:.3f}",
            "copied lines": copied,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def poem_prompt(form: Form, topic: str) -> str:
    """The prompt `musegpt write poem` gives the model."""
    from musegpt.studio.poem import POEM_PROMPT

    lang = "zh" if form.language == "zh" else "en"
    return POEM_PROMPT[lang].format(form=form.display_name, topic=topic.strip())


def evaluate_form(
    engine: PoemEngine,
    form: Form,
    topics: Sequence[str],
    *,
    seed: int = 0,
    params: SamplingParams | None = None,
    reference: Reference | None = None,
    batch: int = 1,
    progress: Callable[[str], None] | None = None,
) -> FormScore:
    """One form on every topic, constrained and unconstrained (see the module doc);
    `batch` topics are decoded together (time per poem is then the batch's time shared)."""
    from musegpt.forms.constraints import form_constraints
    from musegpt.studio.studio import studio_params
    from musegpt.studio.text import distinct_n

    params = studio_params(params, max_new_tokens=suggested_max_new_tokens(form), stop=[])
    constraints = form_constraints(form, engine.tokenizer)
    passed = [0, 0]
    seconds = [0.0, 0.0]
    tokens = 0
    poems: list[str] = []
    failures: list[str] = []
    copied = total_lines = 0
    batch = max(batch, 1)
    for first in range(0, len(topics), batch):
        chunk = list(topics[first : first + batch])
        if progress is not None:
            progress(f"{form.name} {first + len(chunk)}/{len(topics)}")
        prompts = [poem_prompt(form, topic) for topic in chunk]
        start = time.perf_counter()
        done = engine.complete(prompts, params, constraints, seed=seed + first, n=1)
        seconds[0] += time.perf_counter() - start
        longest = max(len(c.token_ids) for c in done)
        # The unconstrained poem gets twice the room the constrained ones needed.
        free_params = params.model_copy(
            update={"max_new_tokens": min(params.max_new_tokens, 2 * longest + 16)}
        )
        start = time.perf_counter()
        free = engine.complete(prompts, free_params, [], seed=seed + first, n=1)
        seconds[1] += time.perf_counter() - start
        for topic, c, f in zip(chunk, done, free, strict=True):
            text = clean_output(c.text)
            report = check(text, form)
            passed[0] += report.passed
            passed[1] += check(first_poem(f.text, form), form).passed
            tokens += len(c.token_ids)
            poems.append(text)
            if not report.passed:
                failures.append(f"{topic}: " + "; ".join(report.reasons))
            if reference is not None:
                lines, _ = split_lines(text, form)
                copied += sum(reference.copied(line) for line in lines)
                total_lines += len(lines)
    n = max(len(topics), 1)
    return FormScore(
        form=form.name,
        language=form.language,
        topics=len(topics),
        constrained_pass=passed[0] / n,
        unconstrained_pass=passed[1] / n,
        seconds_constrained=seconds[0] / n,
        seconds_unconstrained=seconds[1] / n,
        tokens_constrained=tokens / n,
        distinct2=distinct_n(poems, 2),
        copied_lines=(copied / total_lines if total_lines else 0.0) if reference else None,
        poems=poems,
        failures=failures,
    )


def evaluate(
    engine: PoemEngine,
    forms: Sequence[str],
    topics: int = 30,
    *,
    seed: int = 0,
    params: SamplingParams | None = None,
    reference: Reference | None = None,
    batch: int = 1,
    progress: Callable[[str], None] | None = None,
) -> Iterator[FormScore]:
    """`evaluate_form` for each named form on its language's first `topics` topics."""
    chosen = [get_form(name) for name in forms]
    for form in chosen:
        yield evaluate_form(
            engine, form, load_topics(form.language, topics),
            seed=seed, params=params, reference=reference, batch=batch,
            progress=progress,
        )  # fmt: skip


def markdown_table(rows: Sequence[dict[str, str]]) -> str:
    if not rows:
        return "(no results)\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row[h] for h in head) + " |" for row in rows]
    return "\n".join(lines) + "\n"
