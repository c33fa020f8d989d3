"""Templates of rules.yaml expanded into literal phrases: `{a|b}` is a choice, `@name` a
slot (a list of phrases). "{i will|i'll} @harm @you" is every combination."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

_PART = re.compile(r"\{([^{}]*)\}|@([a-z_]+)")


def expand(template: str, slots: Mapping[str, Sequence[str]]) -> list[str]:
    """Every phrase `template` stands for."""
    pieces: list[list[str]] = []
    at = 0
    for m in _PART.finditer(template):
        pieces.append([template[at : m.start()]])
        if m.group(1) is not None:
            pieces.append(m.group(1).split("|"))
        else:
            name = m.group(2)
            if name not in slots:
                raise ValueError(f"rule template {template!r} names an unknown slot @{name}")
            pieces.append(list(slots[name]))
        at = m.end()
    pieces.append([template[at:]])
    return ["".join(choice) for choice in itertools.product(*pieces)]


def expand_all(templates: Sequence[str], slots: Mapping[str, Sequence[str]]) -> list[str]:
    return sorted({p for t in templates for p in expand(t, slots)})
