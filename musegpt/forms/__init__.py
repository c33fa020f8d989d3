"""Poetic forms: definitions (`Form`, `get_form`), a checker (`check`), constrained decoding
(`form_constraints`) and `write_poem`, which returns only a poem that keeps its form.

    from musegpt.forms import check, get_form
    report = check(text, get_form("wujue", rhyme_system="xinyun", strict=True))
    print(report.passed, report.reasons)

The heavy parts (pronouncing dictionary, pinyin, torch) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from musegpt.forms.form import (
    Budget,
    Form,
    FormError,
    UnknownFormError,
    builtin_forms,
    form_from_mapping,
    form_from_yaml,
    form_names,
    get_form,
)

if TYPE_CHECKING:
    from musegpt.forms.checker import FormReport, LineReport, check
    from musegpt.forms.constraints import FormConstraint, form_constraints
    from musegpt.forms.writer import (
        GenerateFn,
        Poem,
        PoemFormError,
        model_generate_fn,
        suggested_max_new_tokens,
        write_poem,
    )

_LAZY = {
    "FormReport": "musegpt.forms.checker",
    "LineReport": "musegpt.forms.checker",
    "check": "musegpt.forms.checker",
    "FormConstraint": "musegpt.forms.constraints",
    "form_constraints": "musegpt.forms.constraints",
    "GenerateFn": "musegpt.forms.writer",
    "Poem": "musegpt.forms.writer",
    "PoemFormError": "musegpt.forms.writer",
    "model_generate_fn": "musegpt.forms.writer",
    "suggested_max_new_tokens": "musegpt.forms.writer",
    "write_poem": "musegpt.forms.writer",
}

__all__ = [
    "Budget",
    "Form",
    "FormConstraint",
    "FormError",
    "FormReport",
    "GenerateFn",
    "LineReport",
    "Poem",
    "PoemFormError",
    "UnknownFormError",
    "builtin_forms",
    "check",
    "form_constraints",
    "form_from_mapping",
    "form_from_yaml",
    "form_names",
    "get_form",
    "model_generate_fn",
    "suggested_max_new_tokens",
    "write_poem",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'musegpt.forms' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
