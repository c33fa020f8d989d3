"""`KeptScreen`: what a reader sees of a chapter while it is written.

A chapter's draft is cleaned after it is written (`plan_checks.clean_chapter`): script
lines narrated, repeats and talk about the writing dropped, an unfinished end cut. Streamed
as drafted, the terminal showed lines the saved chapter does not have (seen: "Elliot
Sibley: I'm sorry I forgot you!", narrated in story.json). The screen shows the draft as
cleaning keeps it instead, a sentence behind the model (cleaning may still change the
newest sentence), so what was shown is what is saved.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from musegpt.studio.plan_checks import letters, sentences
from musegpt.studio.text import SENTENCE_END

# Where a draft may have gained a sentence: only then is it cleaned again (cleaning a
# chapter takes milliseconds; a draft grows a token at a time).
GROWN = re.compile(f"{SENTENCE_END.pattern}|\n")


class KeptScreen:
    """Shows (`show`) what `keep` (the chapter's cleaning) keeps of each draft passed to
    `update`, but its last sentence, and at `finish` the chapter as saved."""

    def __init__(self, show: Callable[[str], None], keep: Callable[[str], str]) -> None:
        self.show, self.keep = show, keep
        self.shown = ""
        self.looked = 0  # the draft's length when last looked at
        self.revised = False  # whether cleaning changed what was shown (`finish`)

    def update(self, draft: str) -> None:
        """The chapter's whole draft so far (a new round's draft may be shorter: it goes on
        from the cleaned text)."""
        new = draft[self.looked :] if len(draft) > self.looked else draft
        self.looked = len(draft)
        if not GROWN.search(new):
            return
        pieces = sentences(self.keep(draft))
        while pieces and not letters(pieces[-1]):
            pieces.pop()
        self.advance("".join(pieces[:-1]).rstrip())

    def advance(self, stable: str) -> None:
        if stable.startswith(self.shown) and len(stable) > len(self.shown):
            self.show(stable[len(self.shown) :])
            self.shown = stable

    def finish(self, final: str) -> None:
        """The chapter as saved: the rest of it shown; where cleaning changed a paragraph
        already shown (rare: a later sentence can change how an earlier one is kept), that
        paragraph is shown again as kept, after a blank line."""
        if final.startswith(self.shown):
            self.advance(final)
            return
        shown = self.shown.split("\n")
        lines = final.split("\n")
        same = 0
        while same < min(len(shown), len(lines)) - 1 and shown[same] == lines[same]:
            same += 1
        self.revised = True
        self.show("\n\n" + "\n".join(lines[same:]).strip("\n"))
        self.shown = final
