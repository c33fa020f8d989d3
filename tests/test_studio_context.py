"""What the model is given to continue a text: memory on top, lorebook entries the recent
text mentions, the author's note a chosen number of lines above the cursor, and the text cut
from its start (never the blocks) to fit the budget."""

from __future__ import annotations

import pytest

from musegpt.studio.context import ContextError, LoreEntry, active_entries, assemble

LORE = [
    LoreEntry("Keeper", ("lighthouse", "keeper"), "The keeper is old."),
    LoreEntry("Moon", ("moon",), "The moon listens."),
    LoreEntry("Mei", ("小美",), "小美是灯塔看守人。"),
]


def chars(text: str) -> int:
    return len(text)


def test_entries_activate_on_whole_word_keys_in_any_case() -> None:
    assert [e.name for e in active_entries(LORE, "The LIGHTHOUSE stood.")] == ["Keeper"]
    assert active_entries(LORE, "lighthouses and moonlight") == []  # not whole words
    assert [e.name for e in active_entries(LORE, "她叫小美。")] == ["Mei"]  # Chinese: anywhere


def test_memory_entries_and_note_in_their_places() -> None:
    text = "The wind rose.\nThe lighthouse was dark.\nShe"
    context = assemble(text, chars, 1000, "A ghost story.", LORE, "gloomy", 1)
    assert context.prompt == (
        "A ghost story.\n\nThe keeper is old.\n\n"
        "The wind rose.\nThe lighthouse was dark.\n[Author's note: gloomy]\nShe"
    )
    assert (context.tokens, context.active, context.dropped_chars) == (
        len(context.prompt),
        ["Keeper"],
        0,
    )
    at_top = assemble("one\ntwo", chars, 1000, note="n", note_depth=5).prompt
    assert at_top == "[Author's note: n]\none\ntwo"
    assert assemble("one\ntwo", chars, 1000).prompt == "one\ntwo"  # nothing added


def test_the_text_loses_its_oldest_words_first_to_fit() -> None:
    text = "alpha beta gamma delta epsilon the moon"
    context = assemble(text, chars, 40, "MEM", LORE)
    assert context.tokens <= 40 and context.prompt.startswith("MEM\n\nThe moon listens.\n\n")
    kept = context.prompt.removeprefix("MEM\n\nThe moon listens.\n\n")
    assert text.endswith(kept) and kept.split()[0] in text.split()  # cut between words
    assert context.dropped_chars == len(text) - len(kept)
    with pytest.raises(ContextError, match="memory, lorebook entries and author's note"):
        assemble(text, chars, 10, "a memory far too long for the budget")
