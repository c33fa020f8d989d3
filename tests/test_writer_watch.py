"""A writer stops a decode where the text it watches for appears, not where the stream
(held back for banned phrases) shows it."""

from __future__ import annotations

from musegpt.engines.base import Engine
from musegpt.generation.params import SamplingParams
from musegpt.studio.writer import Writer


def test_a_draft_is_stopped_where_it_goes_astray_not_a_window_later(gemma: Engine) -> None:
    writer = Writer(gemma, SamplingParams(seed=1, max_new_tokens=200))
    seen: list[str] = []

    def long_enough(text: str) -> bool:  # stands for "stalled": a condition on the text
        seen.append(text)
        return len(text) >= 30

    text = writer.write(
        "The lighthouse keeper climbed the stairs and",
        200,
        avoid_regex=[r"\bzebra crossing\b"],  # any pattern: the stream then holds text back
        until=long_enough,
        clean_end=False,
    )
    # Stopped within a few tokens of 30 characters, where waiting for the stream (128
    # characters held back) decoded about 40 tokens more.
    assert any(len(t) >= 30 for t in seen)
    assert writer.decoded <= len(gemma.tokenize(seen[-1])) + 2
    assert len(text) < 30 + 40
