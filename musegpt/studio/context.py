"""What the model is given when the studio continues a text: the one place that decides.

From the top: the memory block (always kept), the lorebook entries whose keys appear in the
recent text, then as much of the text as fits, with the author's note inserted a chosen
number of lines above its end (the cursor). When the whole does not fit the model's
budget, the text loses its oldest part first; memory, entries and note are never cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

SCAN_CHARS = 2000  # the recent text that activates lorebook entries
NOTE_FORMAT = "[Author's note: {note}]"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")


class ContextError(ValueError):
    """The fixed blocks (memory, active entries, note) alone exceed the model's budget."""


@dataclass(frozen=True)
class LoreEntry:
    name: str
    keys: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Context:
    prompt: str  # exactly what the model is given
    tokens: int
    budget: int
    active: list[str] = field(default_factory=list)  # names of the lorebook entries used
    dropped_chars: int = 0  # of the text's start, left out to fit the budget


def key_pattern(key: str) -> re.Pattern[str]:
    """A key matches as a whole word, any case (Chinese and Japanese keys: anywhere)."""
    escaped = re.escape(key.strip())
    if _CJK.search(key):
        return re.compile(escaped)
    return re.compile(rf"(?<!\w){escaped}(?!\w)", re.IGNORECASE)


def active_entries(entries: Iterable[LoreEntry], recent: str) -> list[LoreEntry]:
    """The entries one of whose keys appears in `recent`, in the lorebook's order."""
    return [e for e in entries if any(k.strip() and key_pattern(k).search(recent) for k in e.keys)]


def with_note(text: str, note: str, depth: int) -> str:
    """`text` with the author's note as its own line `depth` lines above the end."""
    if not note.strip():
        return text
    lines = text.split("\n")
    at = max(0, len(lines) - depth) if depth else len(lines)
    block = NOTE_FORMAT.format(note=note.strip())
    if depth == 0:  # right at the cursor: on its own line, and the text goes on below it
        return text + ("\n" if text and not text.endswith("\n") else "") + block + "\n"
    return "\n".join([*lines[:at], block, *lines[at:]])


def assemble(
    text: str,
    count_tokens: Callable[[str], int],
    budget: int,
    memory: str = "",
    lore: Sequence[LoreEntry] = (),
    note: str = "",
    note_depth: int = 3,
) -> Context:
    """The context for continuing `text` (everything before the cursor) within `budget`
    tokens, as counted by `count_tokens`."""
    active = active_entries(lore, text[-SCAN_CHARS:])
    head = "".join(
        f"{block.strip()}\n\n" for block in (memory, *(e.text for e in active)) if block.strip()
    )

    def build(start: int) -> str:
        return head + with_note(text[start:], note, note_depth)

    prompt = build(0)
    tokens = count_tokens(prompt)
    dropped = 0
    if tokens > budget:
        fixed = count_tokens(build(len(text)))
        if fixed > budget:
            raise ContextError(
                f"memory, lorebook entries and author's note take {fixed} tokens; the model "
                f"has room for {budget}: shorten them, or ask for fewer tokens"
            )
        low, high = 0, len(text)  # the least start that fits: the most text kept
        while low < high:
            middle = (low + high) // 2
            if count_tokens(build(middle)) <= budget:
                high = middle
            else:
                low = middle + 1
        dropped = _word_start(text, low)
        prompt = build(dropped)
        tokens = count_tokens(prompt)
    return Context(prompt, tokens, budget, [e.name for e in active], dropped)


def _word_start(text: str, at: int) -> int:
    """`at`, moved on to the start of the next word where it falls inside one."""
    if at == 0 or at >= len(text) or not text[at - 1].isalnum() or _CJK.match(text[at]):
        return at
    space = re.compile(r"\s").search(text, at)
    return space.end() if space else at
