"""The README's script example on the default model: a draft that ends ("THE END", as the
few-shot example does) after its first paragraph of action, before anyone speaks, is
continued from there with that ending banned, instead of being drawn again from nothing.
With seed 4 every one of the four drafts used to end so, and the command failed."""

from __future__ import annotations

from musegpt.studio.script import fountain_elements
from musegpt.studio.studio import Studio

README_SITUATION = "Two strangers miss the last train and share a bench till dawn."


def test_a_scene_that_ends_before_anyone_speaks_is_continued(studio: Studio) -> None:
    work = studio.script(README_SITUATION, seed=4)
    assert work.meta["attempt"] == 1
    elements = fountain_elements(work.text)
    assert elements["Slug"] >= 1 and elements["Dialog"] >= 2
    assert "THE END" not in work.text
