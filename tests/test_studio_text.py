"""The studio's model-independent parts: hygiene, Fountain, idea lists, story projects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from musegpt.studio.script import fountain_elements, to_fountain
from musegpt.studio.story import Character, Scene, StoryBible, StoryProject
from musegpt.studio.tasks import IdeaList, StudioError, list_items
from musegpt.studio.text import (
    cut_bad_tail,
    cut_ngram_loops,
    cut_repeated_lines,
    detect_lang,
    distinct_n,
    end_cleanly,
    similarity,
    tidy,
    units,
)


def test_language_is_detected() -> None:
    assert detect_lang("a robot who discovers love") == "en"
    assert detect_lang("一个发现爱情的机器人") == "zh"
    assert detect_lang("写一首关于 robot 的诗") == "zh"
    assert detect_lang("1234 !!") == "en"


def test_a_line_said_a_third_time_is_cut() -> None:
    text = "I love you.\nThe sea.\nI love you!\nMore.\ni LOVE you\nEnd."
    assert cut_repeated_lines(text) == "I love you.\nThe sea.\nI love you!\nMore."


def test_ngram_loops_are_cut_after_the_first_saying() -> None:
    assert cut_ngram_loops("We ran and then and then and then we fell.") == "We ran and then"
    assert cut_ngram_loops("no no no") == "no"
    assert cut_ngram_loops("他笑了哈哈哈，走了。") == "他笑了哈"
    assert cut_ngram_loops("Wait... what?!") == "Wait... what?!"
    assert cut_ngram_loops("the cat sat on the mat") == "the cat sat on the mat"


@given(st.lists(st.sampled_from(["la", "di", "da", "月", "光", ".", "\n"]), max_size=60))
def test_cut_text_is_a_prefix_without_loops(pieces: list[str]) -> None:
    text = " ".join(pieces)
    cut = cut_bad_tail(text)
    assert text.startswith(cut)
    words = units(cut)
    for n in range(1, 5):
        for i in range(len(words) - 3 * n + 1):
            gram = words[i : i + n]
            if n == 1 and not gram[0].isalnum():
                continue
            assert not (words[i + n : i + 2 * n] == gram == words[i + 2 * n : i + 3 * n])


def test_text_ends_at_a_finished_sentence() -> None:
    assert end_cleanly("She left. The door") == "She left."
    assert end_cleanly("他走了。门") == "他走了。"
    assert end_cleanly('"Go," she said. "Now!" And') == '"Go," she said. "Now!"'
    assert end_cleanly("no sentence end") == "no sentence end"


def test_tidy_drops_the_next_few_shot_example() -> None:
    raw = "The rain sang on the roof.\n\n\n\nSubject: a cat\nDescription: fur"
    assert tidy(raw, ["Subject:"]) == "The rain sang on the roof."


def test_distinct_n_and_similarity() -> None:
    assert distinct_n(["a b c", "a b c"], 2) == 0.5
    assert distinct_n([], 2) == 0.0
    assert similarity("The Keeper of Lights", "The keeper of lights!") == 1.0
    assert similarity("The Keeper of Lights", "Salt in the Lamp Room") < 0.3


def test_idea_list_refuses_near_duplicates_and_examples() -> None:
    ideas = IdeaList(3, avoid=["The Keeper of Drowned Lights"], ideas=[])
    assert not ideas.offer("The Keeper of the Drowned Lights")
    assert ideas.offer("A Map of Quiet Harbours")
    assert not ideas.offer("A map of quiet harbours.")
    assert ideas.offer("Iron Gulls")
    assert ideas.offer("Winter Ferry")
    assert not ideas.offer("Something else entirely")  # already three
    assert ideas.ideas == ["A Map of Quiet Harbours", "Iron Gulls", "Winter Ferry"]


def test_list_items_read_numbers_and_bullets() -> None:
    text = "1. First idea\n2) Second\n- third one\n• fourth\n3、第五个\nnot an item\n4."
    assert list_items(text) == ["First idea", "Second", "third one", "fourth", "第五个"]


def test_model_style_output_becomes_fountain_a_parser_reads() -> None:
    raw = (
        "int. lighthouse - night\n"
        "The lamp turns. ELIAS climbs the stairs.\n"
        "ELIAS\n(out of breath)\nWho's there?\n\n"
        "MARA\nIt's me, father.\n\n"
        "THE WIND HOWLS.\n"
    )
    scene = to_fountain(raw, "INT. SOMEWHERE - DAY")
    elements = fountain_elements(scene)
    assert scene.startswith("INT. LIGHTHOUSE - NIGHT\n\n")
    assert elements["Slug"] == 1 and elements["Dialog"] == 2
    assert "!THE WIND HOWLS." in scene  # capitals forced to stay action


def test_chinese_cues_are_forced_and_a_heading_is_added() -> None:
    raw = "站台上空无一人。\n\n安娜\n（低声）\n走了。\n\n老李\n那就等吧。\n"
    scene = to_fountain(raw, "INT. 某处 - 日")
    elements = fountain_elements(scene)
    assert scene.startswith("INT. 某处 - 日")
    assert "@安娜\n(低声)\n走了。" in scene
    assert elements["Slug"] == 1 and elements["Dialog"] == 2


def test_lorebook_entries_activate_on_their_names() -> None:
    bible = StoryBible(
        "T", "a harbour", "plain", "s",
        [Character("Elias Ward", "keeper"), Character("Mara Ward", "daughter"),
         Character("Tom Bell", "captain"), Character("林小雨", "女儿")],
    )  # fmt: skip
    names = [c.name for c in bible.relevant("Tom brings the mail.")]
    assert names == ["Elias Ward", "Tom Bell"]  # the protagonist always, Tom by first name
    assert [c.name for c in bible.relevant("小雨回来了")] == ["Elias Ward", "林小雨"]


def test_story_project_round_trips_and_reports_damage(tmp_path: Path) -> None:
    bible = StoryBible("T", "s", "st", "syn", [Character("A", "b")])
    project = StoryProject(tmp_path / "p", "premise", "en", bible, [Scene("beat", "Text.", "S")])
    project.save()
    again = StoryProject.load(tmp_path / "p")
    assert again == project
    assert (tmp_path / "p" / "story.md").read_text().startswith("# T")
    assert "**A**: b" in (tmp_path / "p" / "bible.md").read_text()
    data = json.loads((tmp_path / "p" / "story.json").read_text())
    del data["premise"]
    (tmp_path / "p" / "story.json").write_text(json.dumps(data))
    with pytest.raises(StudioError, match="damaged"):
        StoryProject.load(tmp_path / "p")
    with pytest.raises(StudioError, match="no story project"):
        StoryProject.load(tmp_path / "elsewhere")


def test_characters_are_read_from_what_small_models_write() -> None:
    from musegpt.studio.story import parse_character

    assert parse_character("Elias Ward: the keeper, sixty.", "en") == Character(
        "Elias Ward", "the keeper, sixty."
    )
    assert parse_character("<i>Artemis</i>, an animated robot", "en") == Character(
        "Artemis", "Artemis, an animated robot"
    )
    found = parse_character("28-year-old robot Alice.", "en")
    assert found is not None and found.name == "Alice"
    assert parse_character("1st robot", "en") is None
    assert parse_character("林小雨：他的女儿", "zh") == Character("林小雨", "他的女儿")
    assert parse_character("他的女儿很漂亮", "zh") is None


def test_chinese_punctuation_takes_no_space_after_it_and_english_keeps_its_own() -> None:
    assert tidy("柳春发现机器人。 她认识了它。 \n她说： “好。” 他笑了。") == (
        "柳春发现机器人。她认识了它。\n她说：“好。”他笑了。"
    )
    assert tidy("“Hello,” she said. “Fine.” He left.") == "“Hello,” she said. “Fine.” He left."
