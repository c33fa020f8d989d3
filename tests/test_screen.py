"""What the terminal shows of a chapter while it is written: the draft as cleaning keeps it."""

from __future__ import annotations

from functools import partial

from hypothesis import given
from hypothesis import strategies as st

from musegpt.studio.screen import KeptScreen
from musegpt.studio.story import clean_draft

# A draft with a script line (narrated by cleaning), a sentence said again (dropped) and
# an unfinished end (cut): what a stream of the raw draft showed.
DRAFT = (
    "Mara woke before the robot did. The house was cold.\n"
    "Elliot Sibley: I'm sorry I forgot you!\n"
    "Mara woke before the robot did. She lit the stove and waited.\n\n"
    "The robot opened one eye and said nothing. It was"
)


@given(st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=60))
def test_the_screen_shows_only_what_is_kept_and_ends_as_saved(sizes: list[int]) -> None:
    keep = partial(clean_draft, lang="en", earlier="")
    shown: list[str] = []
    screen = KeptScreen(shown.append, keep)
    at = 0
    for size in sizes:  # the draft grows by deltas of any size
        at = min(at + size, len(DRAFT))
        screen.update(DRAFT[:at])
        assert "Sibley:" not in "".join(shown)  # never the script line as drafted
    screen.update(DRAFT)
    saved = keep(DRAFT)
    screen.finish(saved)
    assert "".join(shown) == saved and not screen.revised
    assert saved.count("Mara woke before") == 1 and 'Elliot Sibley said, "' in saved
    assert saved.endswith("said nothing.")  # the unfinished end cut
    assert "\nShe lit" in saved  # the line's first sentence dropped, and with it its space


def test_a_paragraph_cleaning_changed_after_it_was_shown_is_shown_again() -> None:
    shown: list[str] = []
    screen = KeptScreen(shown.append, lambda draft: draft)
    screen.update("One. Two.\n\nThree. Four.")
    assert "".join(shown) == "One. Two.\n\nThree."
    screen.finish("One. Two.\n\nThree, four.")
    assert screen.revised and "".join(shown).endswith("\n\nThree, four.")
