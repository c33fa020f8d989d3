"""Chapters keep their protagonist (issue 14): on the default model, a chapter whose beat is
about another character still names the protagonist, and a name the program wrote is
never left standing as a heading."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from musegpt.engines.base import Engine
from musegpt.studio import Studio
from musegpt.studio import plan_checks as checks
from musegpt.studio.plan_rules import echo_outside
from musegpt.studio.story import (
    Character,
    Scene,
    StoryBible,
    StoryProject,
    chapter_steps,
    chapter_target,
    write_scene,
)
from musegpt.studio.text import Lang
from musegpt.studio.writer import Writer

# A plan whose only beat is about the second character: without the protagonist's
# paragraph, the default model wrote seeds 1-5 (English) and seed 2 (Chinese) without the
# protagonist (measured).
PLANS: dict[Lang, tuple[str, StoryBible, str]] = {
    "en": (
        "a robot who discovers love",
        StoryBible(
            "The Tin Heart",
            "a small harbour town, today",
            "warm, third person, past tense",
            "A robot who discovers love: Ada meets a fisherman.",
            [
                Character("Ada", "a repair robot who has never felt anything"),
                Character("Jonah Reed", "an old fisherman who talks to the sea"),
            ],
        ),
        "Jonah Reed takes his boat out before dawn and sings to the fish.",
    ),
    "zh": (
        "一个发现爱情的机器人",
        StoryBible(
            "铁心",
            "今天的一个海边小镇",
            "温暖，第三人称，过去时",
            "一个发现爱情的机器人：阿铁遇见了一位老渔夫。",
            [
                Character("阿铁", "一个从没有感情的修理机器人"),
                Character("周大海", "一个对着大海说话的老渔夫"),
            ],
        ),
        "周大海天不亮就出海，对着鱼唱歌。",
    ),
}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_chapter_about_another_character_still_names_the_protagonist(
    gemma: Engine, tmp_path: Path, lang: Lang
) -> None:
    premise, bible, beat = PLANS[lang]
    project = StoryProject(tmp_path, premise, lang, bible, [Scene(beat)], scene_tokens=120)
    writer = Studio(gemma).writer(premise, seed=2)
    text = write_scene(writer, project, 0, candidates=2).text
    assert text.startswith(bible.characters[1].name), text  # the beat's character leads
    assert any(key in text for key in bible.characters[0].keys), text
    # The name the program wrote goes on as a sentence, not as a heading of its own.
    assert not text.startswith(bible.characters[1].name + "\n"), text


# The chapter before, as the default model wrote one: the next chapter often retold it
# (dropped by cleaning) or began talking about the writing, and was kept as a line.
PREVIOUS: dict[Lang, str] = {
    "en": "Ada fixed the lamp in the harbour office. She had never felt anything, but the "
    "fisherman's song made her stop. She listened until the tide turned.",
    "zh": "阿铁修好了港口办公室的灯。它从来没有感情，可是老渔夫的歌让它停了下来。"
    "它一直听到潮水退去。",
}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_chapter_is_never_left_far_below_its_target(
    gemma: Engine, tmp_path: Path, lang: Lang
) -> None:
    premise, bible, beat = PLANS[lang]
    first = Scene(bible.synopsis.partition("：" if lang == "zh" else ": ")[2], PREVIOUS[lang])
    first.summary = first.beat
    tokens = 150
    project = StoryProject(
        tmp_path, premise, lang, bible, [first, Scene(beat)], scene_tokens=tokens
    )
    writer = Studio(gemma).writer(premise, seed=3)
    text = write_scene(writer, project, 1, candidates=2).text
    assert checks.size(text, lang) >= chapter_target(tokens, lang) // 3, text


@dataclass
class Metered(Writer):
    """A writer that adds up what its calls cost (decode steps) and kept (tokens)."""

    steps_in_all: int = 0
    kept_in_all: int = 0

    def write(self, *args: Any, **kwargs: Any) -> str:
        text = super().write(*args, **kwargs)
        self.steps_in_all += self.stepped
        self.kept_in_all += self.decoded
        return text

    def write_many(self, *args: Any, **kwargs: Any) -> list[str]:
        drafts = super().write_many(*args, **kwargs)
        self.steps_in_all += self.stepped
        return drafts


# A word the model writes all the time, banned: every time it is written it is taken back,
# a decode step spent on nothing kept (as the retelling bans' take-backs are).
OFTEN: dict[Lang, str] = {"en": r"(?i)\b(?:the|a|and)\b", "zh": "的|了"}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_chapter_takes_no_more_steps_than_its_budget_take_backs_included(
    gemma: Engine, tmp_path: Path, lang: Lang
) -> None:
    """A chapter's budget counts every token decoded, kept or taken back (a Chinese story
    whose take-backs were not counted ran 3-6 s past its 60 s target)."""
    premise, bible, beat = PLANS[lang]
    tokens = 150
    project = StoryProject(tmp_path, premise, lang, bible, [Scene(beat)], scene_tokens=tokens)
    plain = Studio(gemma).writer(premise, seed=1)
    params = plain.params.model_copy(update={"banned_regex": [OFTEN[lang]]})
    writer = Metered(gemma, params, lang)
    text = write_scene(writer, project, 0, candidates=2).text
    steps, most = chapter_steps(tokens, lang)
    assert writer.kept_in_all < writer.steps_in_all - 20  # many tokens were taken back
    assert steps <= writer.steps_in_all <= most, (writer.steps_in_all, text)
    assert checks.size(text, lang) >= chapter_target(tokens, lang) // 3, text


# An earlier chapter that says a phrase twice, and a beat that says it again: the model
# copies it (seed 1 wrote "长达八十厘米的高个子" a third time without the phrase rules,
# measured), which a chapter may not do (`story.CirclingPhrases`, `PhraseGuard`).
TWICE = "阿铁是一个长达八十厘米的高个子机器人。周大海看着这个长达八十厘米的高个子机器人，笑了。"


def test_a_chapter_never_says_a_run_of_the_story_a_third_time(
    gemma: Engine, tmp_path: Path
) -> None:
    premise, bible, _ = PLANS["zh"]
    first = Scene("阿铁遇见了周大海。", TWICE)
    first.summary = "阿铁遇见了周大海，周大海笑了。"
    beat = Scene("周大海又看见那个长达八十厘米的高个子机器人。")
    project = StoryProject(tmp_path, premise, "zh", bible, [first, beat], scene_tokens=150)
    text = write_scene(Studio(gemma).writer(premise, seed=1), project, 1, candidates=2).text
    assert checks.size(text, "zh") >= chapter_target(150, "zh") // 3, text
    assert checks.circling_phrases(text, before=TWICE) == [], text


def test_a_chapter_tells_its_beat_in_its_own_words(gemma: Engine, tmp_path: Path) -> None:
    """A quarter of Chinese chapters opened with their beat word for word; the plan is one
    the default model drew, on which seeds 1 and 3 did so before the first round was
    barred from the beat's runs of six characters (names and the premise aside)."""
    premise = "一个能听见树木心声的女孩"
    bible = StoryBible(
        "树影",
        "一九四五年，云南的一座小城。",
        "幽静，安静，低调。",
        "一个能听见树木心声的女孩：杜小梅，十五岁，下一次生日，他从来不叫她妈。",
        [
            Character("杜小梅", "女孩，十五岁，上过五十八次生日，她一直被爸爸叫苦。"),
            Character("乔大青", "她是她那九年前的女儿。"),
        ],
    )
    beat = "杜小梅的生日那天，听见树木的心声。"
    names = [key for c in bible.characters for key in c.keys]
    for seed in (1, 3):
        project = StoryProject(tmp_path / str(seed), premise, "zh", bible, [Scene(beat)])
        project.scene_tokens = 150
        text = write_scene(Studio(gemma).writer(premise, seed=seed), project, 0, 2).text
        assert not re.search(echo_outside([beat], premise, names, 6, 6), text), text
        assert text.startswith("杜小梅"), text  # the beat's character still leads
