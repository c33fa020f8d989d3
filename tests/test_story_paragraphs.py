"""A Chinese chapter's narration comes in paragraphs, not lines (`ParagraphFloor`): the
default model broke the line after nearly every sentence (411 of 470 paragraphs in the
eval's Chinese chapters were one sentence)."""

from __future__ import annotations

from pathlib import Path

from test_story_chapters import PLANS

from musegpt.engines.base import Engine
from musegpt.studio import Studio
from musegpt.studio.paragraph_guard import LONG_ENOUGH, may_break
from musegpt.studio.story import Scene, StoryProject, write_scene


def test_a_narration_paragraph_breaks_after_two_sentences_or_once_long() -> None:
    assert not may_break("她笑了起来。")
    assert may_break("她笑了起来。他也笑了。")
    assert may_break("“你好。”")  # a line of talk is a paragraph
    assert may_break("")  # the second break of a blank line
    long = "他沿着海边走了很久很久，直到太阳慢慢落下，海面上只剩下一片金色的光。"
    assert len(long) >= LONG_ENOUGH and may_break(long)


def test_the_default_models_chinese_narration_is_in_paragraphs(
    gemma: Engine, tmp_path: Path
) -> None:
    premise, bible, beat = PLANS["zh"]
    project = StoryProject(tmp_path, premise, "zh", bible, [Scene(beat)], scene_tokens=200)
    text = write_scene(Studio(gemma).writer(premise, seed=1), project, 0, candidates=1).text
    paragraphs = [p for p in text.split("\n") if p.strip()]
    # Every paragraph but the last (which the chapter's end may cut) may have ended.
    lines = [p for p in paragraphs[:-1] if not may_break(p)]
    assert len(paragraphs) >= 3 and not lines, text
