"""The story plan's checkers on hand-written fields: what a plan keeps and what it re-draws
(issue 14: beats that were bare numbers, empty synopses, the example's characters, chapter
headings and chatter inside chapters)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from musegpt.studio import plan_checks as checks
from musegpt.studio.story import (
    SCENE_LABELS,
    Character,
    Scene,
    StoryBible,
    StoryProject,
    anchors,
    chinese_number,
    example_field,
    example_names,
)
from musegpt.studio.work import Work

ROBOT = "a robot who discovers love"
ROBOT_ZH = "一个发现爱情的机器人"
EN_NAMES = anchors(ROBOT, "en", [Character("Unit Seven", "a robot"), Character("Lena", "x")])
ZH_NAMES = anchors(ROBOT_ZH, "zh", [Character("阿七", "机器人"), Character("林小雪", "女孩")])


def test_titles() -> None:
    example = example_field("en", "title")
    assert checks.check_title("The Heart of Unit Seven", ROBOT, "en", example) is None
    assert checks.check_title("", ROBOT, "en", example)
    assert checks.check_title("robot who discovers love", ROBOT, "en", example)  # a cut
    assert checks.check_title("the robot discovers love", ROBOT, "en", example)  # seen, seed 3
    assert checks.check_title("The Keeper's Letter", ROBOT, "en", example)
    assert checks.check_title("2.", ROBOT, "en", example)
    assert checks.check_title("He walked home. Then he slept", ROBOT, "en", example)
    zh = example_field("zh", "title")
    assert checks.check_title("铁心", ROBOT_ZH, "zh", zh) is None
    assert checks.check_title("发现爱情的机器人", ROBOT_ZH, "zh", zh)  # the cut title
    assert checks.check_title("守塔人的信", ROBOT_ZH, "zh", zh)
    assert checks.check_title(ROBOT_ZH, ROBOT_ZH, "zh", zh)  # the premise is not its title
    setting = "一九二三年秋天，小岛上的一座礁石上。"  # seen on seed 1: the example's date
    assert checks.check_phrase(setting, "zh", example_field("zh", "setting"), "setting")


def test_settings_and_styles_are_phrases_not_the_examples() -> None:
    setting = example_field("en", "setting")
    good = "A rainy city in 2090, full of repair shops."
    assert checks.check_phrase(good, "en", setting, "setting") is None
    assert checks.check_phrase(setting, "en", setting, "setting")
    assert checks.check_phrase("-", "en", setting, "setting")
    assert checks.check_phrase("Tokyo", "en", setting, "setting")
    assert (
        checks.check_phrase("未来的城市，雨夜。", "zh", example_field("zh", "setting"), "s") is None
    )
    assert checks.check_phrase("city", "zh", example_field("zh", "setting"), "setting")
    assert checks.check_phrase("未来", "zh", "x", "setting")


def test_characters_need_two_names_none_from_the_example() -> None:
    copied = example_names("en")
    assert copied[0] == "Elias Ward"
    assert checks.check_names(["Unit Seven", "Lena Ortiz"], copied) is None
    assert checks.check_names(["Unit Seven"], copied)
    assert checks.check_names(["Unit Seven", "unit seven"], copied)
    assert checks.check_names(["Unit Seven", "Mary Ward"], copied)  # the copy
    assert checks.check_names(["阿七", "林小雨"], example_names("zh"))


def test_synopsis_is_a_sentence_about_the_story() -> None:
    example = example_field("en", "synopsis")
    good = "Unit Seven meets Lena and learns what love costs."
    assert checks.check_synopsis(good, "en", EN_NAMES, example) is None
    assert checks.check_synopsis("", "en", EN_NAMES, example)
    assert checks.check_synopsis("A long day.", "en", EN_NAMES, example)
    assert checks.check_synopsis("The weather was fine all week long.", "en", EN_NAMES, example)
    zh = example_field("zh", "synopsis")
    assert (
        checks.check_synopsis("机器人阿七遇见了林小雪，慢慢懂得了爱。", "zh", ZH_NAMES, zh) is None
    )
    assert checks.check_synopsis("梦幻花园", "zh", ZH_NAMES, zh)


def test_beats() -> None:
    good = "Lena finds Unit Seven rusting in the rain."
    assert checks.check_beat(good, "en", EN_NAMES, []) is None
    assert checks.check_beat("The robots discovered a garden.", "en", EN_NAMES, []) is None
    for bad in ["2.", "3", "", "Lena runs.", "It rained on the town for days.", "Chapter 2 opens"]:
        assert checks.check_beat(bad, "en", EN_NAMES, []), bad
    assert checks.check_beat("Lena finds Unit Seven rusting in rain.", "en", EN_NAMES, [good])
    assert checks.check_beat("林小雪在雨中发现了生锈的阿七。", "zh", ZH_NAMES, []) is None
    for bad in ["梦幻花园", "巨浪", "2.", "第二章 机器人阿七醒来了。"]:
        assert checks.check_beat(bad, "zh", ZH_NAMES, []), bad


@given(st.integers(min_value=0, max_value=999), st.sampled_from([".", "、", ")", ""]))
def test_a_bare_number_is_never_a_beat(number: int, mark: str) -> None:
    assert checks.check_beat(f"{number}{mark}", "en", EN_NAMES, [])
    assert checks.check_beat(f" {number}{mark} ", "zh", ZH_NAMES, [])


@given(st.lists(st.sampled_from(["Lena", "Unit Seven", "robot", "love"]), min_size=1))
def test_a_sentence_naming_the_story_is_a_beat(words: list[str]) -> None:
    beat = f"In the old workshop {' and '.join(words)} wait for morning."
    assert checks.check_beat(beat, "en", EN_NAMES, []) is None


def test_headings_and_chatter_leave_a_chapter() -> None:
    text = (
        "Unit Seven woke in the rain. Lena was there.\n"
        "Overall, I like this one! It is a good story!"
    )
    assert checks.clean_chapter(text, "en", "") == "Unit Seven woke in the rain. Lena was there."
    zh = "阿七在雨中醒来。林小雪看着他。\n第二章\n阿七走进城市。\n第三章\n"
    assert checks.clean_chapter(zh, "zh", "") == "阿七在雨中醒来。林小雪看着他。"
    assert checks.clean_chapter("第一章\n阿七醒来了。", "zh", "") == "阿七醒来了。"
    repeated = "今天我哭的真惨。阿七擦干了眼泪。今天我哭的真惨。"
    assert checks.clean_chapter(repeated, "zh", "今天我哭的真惨。") == "阿七擦干了眼泪。"
    assert "第十二章" in SCENE_LABELS and chinese_number(21) == "二十一"


def test_fit_prefers_the_draft_on_its_beat() -> None:
    beat = "Lena finds Unit Seven rusting in the rain."
    on = "Lena walked through the rain and found Unit Seven, rusting by the road."
    off = "The dream was long and strange, and the garden sang to nobody at all."
    keys = Character("Unit Seven", "").keys
    assert checks.chapter_fit(on, "en", keys, beat, ROBOT, 20) > checks.chapter_fit(
        off, "en", keys, beat, ROBOT, 20
    )
    prose = "阿七在雨中醒来，林小雪把他带回了修理铺。"
    script = "阿七：你好。\n林小雪：你是谁？\n阿七：我在雨中醒来。"
    zh_keys = Character("阿七", "").keys
    zh_beat = "林小雪在雨中发现了阿七。"
    assert checks.chapter_fit(prose, "zh", zh_keys, zh_beat, ROBOT_ZH, 20) > checks.chapter_fit(
        script, "zh", zh_keys, zh_beat, ROBOT_ZH, 20
    )


def test_the_kept_markdown_holds_the_bible_and_chapter_headings(tmp_path: Path) -> None:
    bible = StoryBible("Iron Heart", "A rainy city.", "Warm, third person.", "Syn.", [])
    bible.characters = [Character("Unit Seven", "a robot"), Character("Lena", "a mechanic")]
    project = StoryProject(tmp_path, ROBOT, "en", bible, [Scene("b", "One."), Scene("c", "Two.")])
    page = Work("story", "Iron Heart", "en", project.text, [], {}, project.markdown()).markdown()
    for part in ["# Iron Heart", "A rainy city.", "**Unit Seven**", "Syn.", "## Chapter 2"]:
        assert part in page


def test_summaries_say_who_did_what_in_their_own_words() -> None:
    example = "Nadia found her grandfather's map of the harbour and hid it from her brother."
    good = "Lena found Unit Seven in the rain and took him home."
    assert checks.check_summary(good, "en", EN_NAMES, example) is None
    assert checks.check_summary('2. "Hello?', "en", EN_NAMES, example)  # the summary
    assert checks.check_summary(
        'Lena said: "I can\'t do this." She left the robot.', "en", EN_NAMES, example
    )
    assert checks.check_summary(
        "Lena found a map of the harbour in the robot.", "en", EN_NAMES, example
    )
    three = "Lena woke. Lena found Unit Seven. Lena took the robot home."
    assert checks.check_summary(three, "en", EN_NAMES, example)
    zh_example = "阿青在外公的木箱里找到一张港口地图，并把它藏了起来。"
    assert (
        checks.check_summary("林小雪在雨中找到了阿七，把他带回了家。", "zh", ZH_NAMES, zh_example)
        is None
    )
    assert checks.check_summary("阿七找到一张港口地图。", "zh", ZH_NAMES, zh_example)


def test_seen_on_gemma_in_chinese_is_refused_or_cleaned() -> None:
    example = "阿青在外公的木箱里找到一张港口地图，并把它藏了起来。"
    looping = "蓝芽的爱人： 蓝芽的爱人： 我的爱人！"  # a summary Gemma wrote (seed 1)
    zh = anchors(ROBOT_ZH, "zh", [Character("蓝芽", "机器人"), Character("柳白", "爱人")])
    assert checks.check_summary(looping, "zh", zh, example)
    chapter = "【机器人的爱情】\n蓝芽一直喜欢我。\n【1】\n（）\n【2】\n" + looping
    assert checks.clean_chapter(chapter, "zh", "") == "蓝芽一直喜欢我。"  # cut at 【1】
    assert checks.clean_chapter("蓝芽一直喜欢我。\n（）\n柳白走了。", "zh", "") == (
        "蓝芽一直喜欢我。\n柳白走了。"
    )
    assert checks.clean_chapter(looping, "zh", "【8】\n" + looping) == ""
