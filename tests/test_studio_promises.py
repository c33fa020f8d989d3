"""Every studio task keeps its promise (issue 14, part 4): a script is never its few-shot
example, a rewrite is of the passage and keeps its meaning, every brainstorm item honours
--kind, a chorus that loops on a phrase is drawn again, an empty topic is refused. Fast
checks of the checkers first, then the tasks on the default model (Gemma 3 270M)."""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from musegpt.cli.app import app
from musegpt.engines.base import Engine
from musegpt.generation.processors import DecodeState
from musegpt.studio import Studio, tasks
from musegpt.studio.plan_checks import keywords, mentions, sentence_key, sentences, size
from musegpt.studio.plan_rules import FavourUnsaid, vocab_texts
from musegpt.studio.script import (
    COPIED,
    PRONOUN,
    SCRIPT,
    cue_line,
    example_names,
    example_scene,
    is_heading,
    speech_fault,
)
from musegpt.studio.tasks import (
    BRAINSTORM,
    DESCRIBE,
    DESCRIBE_LEAST,
    IMAGES,
    LYRICS,
    SAID_AGAIN,
    item_check,
    lyric_fault,
    rewrite_fault,
)
from musegpt.studio.text import (
    HAN,
    Lang,
    echo_pattern,
    example_phrases,
    phrase_loop,
    resemblance,
    similarity,
)

# -- the checkers ---------------------------------------------------------------------------

han_phrase = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=2,
                     max_size=6)  # fmt: skip
separator = st.sampled_from(["", "，", "、", " ", "！", "…"])


@given(han_phrase, separator, separator)
def test_a_chinese_phrase_said_three_times_in_a_line_is_a_loop(
    phrase: str, first: str, second: str
) -> None:
    assert phrase_loop(f"我们{phrase}{first}{phrase}{second}{phrase}") is not None


@given(st.lists(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), unique=True))
def test_a_line_without_a_repeated_character_has_no_loop(chars: list[str]) -> None:
    assert phrase_loop("".join(chars)) is None


@pytest.mark.parametrize(
    ("line", "loop"),
    [
        ("去去了，去去了，去去了", "去去了"),
        ("我想回家，我想回家，我想回家", "我想回家"),
        ("go away, go away, go away", "go away"),
        ("I love you I love you I love you tonight", "i love you"),
        ("哈哈哈，他笑了", None),  # a laugh, not a loop
        ("去了家，去了城，去了海", None),  # parallel lines are not a loop
        ("the cat sat on the mat", None),
        ("banana bananas", None),
    ],
)
def test_phrase_loop_hand_cases(line: str, loop: str | None) -> None:
    assert phrase_loop(line) == loop


def test_a_section_with_a_looping_line_is_refused() -> None:
    lines = ["离开家乡的那天", "去去了，去去了，去去了", "城市的灯火亮了"]
    assert "looped" in (lyric_fault(lines, 4, keywords("离开家乡去城市", "zh"), "zh") or "")
    fine = ["离开家乡的那天", "城市的夜晚很长"]
    assert lyric_fault(fine, 4, keywords("离开家乡去城市", "zh"), "zh") is None
    # A line said twice in a row, or sung in an earlier section (seen in the README's song).
    home = keywords("离开家乡去城市", "zh")
    assert lyric_fault(["走着火车", "走着火车", "我梦见城市"], 4, home, "zh") == SAID_AGAIN
    assert lyric_fault(fine, 4, home, "zh", ["城市的夜晚很长。"]) == SAID_AGAIN
    assert lyric_fault(fine, 4, home, "zh", ["离开家乡的时候"]) is None


def test_the_example_copied_with_small_changes_still_trips_the_ban() -> None:
    import re

    example = example_scene("en")
    pattern = re.compile(echo_pattern(example, "two strangers on a bench"))
    changed = example.replace("MARGARET", "MARY").replace("Friday", "Monday")
    assert pattern.search(changed)
    assert pattern.search("and she said: The Hendersons  signed on Monday")
    assert not pattern.search("Two strangers share a bench till dawn.")
    zh = re.compile(echo_pattern(example_scene("zh"), ""))
    assert zh.search("外婆说：褶子要捏得紧一点")


def test_resemblance_tells_a_copy_from_a_new_scene() -> None:
    for lang in ("en", "zh"):
        example = example_scene(lang)
        assert resemblance(example.replace("DANIEL", "PAUL"), example) > COPIED
    new = "INT. KITCHEN - NIGHT\n\nTOM\nThe soup is cold again.\n\nSARA\nThen heat it."
    assert resemblance(new, example_scene("en")) < COPIED


def test_items_are_checked_for_topic_kind_and_borrowing() -> None:
    twist = item_check("en", "a city under the sea", "plot twists", "a travelling circus")
    assert twist("The city seems drowned, but its people secretly built it that way.") is None
    assert "twist" in (twist("The city under the sea has many fish and coral.") or "")
    assert "topic" in (twist("The mayor is actually a robot who never sleeps.") or "")
    assert "example" in (twist("The circus under the sea is secretly a city.") or "")
    assert "sentence" in (twist("Sea city") or "")
    title = item_check("en", "a haunted lighthouse", "story titles")
    assert title("The Lighthouse Keeper's Last Night") is None
    assert "long" in (title(" ".join(["lighthouse"] * 12)) or "")
    zh = item_check("zh", "海底的城市", "情节反转", "流浪马戏团")
    assert zh("海底的城市其实是一条巨鲸的肚子。") is None
    assert zh("海底的城市有很多鱼和珊瑚。") is not None


def test_rewrite_fault_tells_a_rewrite_from_the_passage_the_sample_or_another_text() -> None:
    passage = "Mara opened the bakery before dawn and lit the old oven."
    sample = "The old man was thin and gaunt with deep wrinkles in the back of his neck."
    assert rewrite_fault("Before the sun, Mara unlocked her bakery and woke the oven.",
                         passage, "en", sample) is None  # fmt: skip
    assert "itself" in (rewrite_fault(passage, passage, "en") or "")
    assert "meaning" in (rewrite_fault("The rain fell on the sea all night.", passage, "en")
                         or "")  # fmt: skip
    retold = "The old man, thin and gaunt, had wrinkles in his neck; Mara saw them at dawn."
    assert "sample" in (rewrite_fault(retold, passage, "en", sample) or "")
    assert "length" in (rewrite_fault("Mara lit the oven at dawn. " * 12, passage, "en") or "")


def test_a_scene_has_headings_cues_and_speeches_a_reader_would_keep() -> None:
    # Seen when the model wrote whole scenes: places as cues, descriptions on every cue,
    # sentences as headings, a speech said twice or given to both speakers.
    assert cue_line("HER (30s, black T-shirt, jeans)") == "HER"
    assert cue_line("LEO (V.O.)") == "LEO (V.O.)" and cue_line("小雪（画外音）") == "@小雪 (画外音)"
    assert is_heading("EXT. TRAIN STATION PLATFORM - NIGHT") and is_heading("INT. 长椅 - 夜")
    sentence = "INT. 31 岁两名老人开车，三辆出租车同时离着家。"
    for seen in ("INT.", sentence, "TENT - BEHIND THE ROAD"):
        assert not is_heading(seen), seen
    assert speech_fault("It's real. It's real.\nIt's real.", []) == "a sentence said twice"
    assert speech_fault("你俩坐在一起。", ["顾远，你俩坐在一起。"], "zh")
    assert speech_fault("CHAIR IN THE BOX", []) and speech_fault("(sighs)", [])
    assert speech_fault("I'll wait for the first train.", ["Go home, Nora."]) is None


# -- the tasks on the default model ---------------------------------------------------------


@pytest.mark.parametrize(
    ("situation", "seed"),
    [
        ("Two strangers miss the last train and share a bench till dawn.", 1),
        ("两个陌生人错过了末班车，在长椅上坐到天亮。", 1),
    ],
)
def test_the_readme_script_is_never_the_example(studio: Studio, situation: str, seed: int) -> None:
    work = studio.script(situation, seed=seed)
    example = example_scene(work.lang)
    assert resemblance(work.text, example, situation) <= COPIED
    assert not any(line in work.text for line in example_phrases(example))
    assert not any(name in work.text for name in example_names(work.lang))
    # The old example, whose situation was the README's own, is not handed back either.
    assert "ANNA" not in work.text and "安娜" not in work.text
    assert SCRIPT[work.lang].count("{situation}") == 1
    # A scene a reader would keep the shape of: two characters speaking in turn under cues
    # that are names, and the situation's words in it.
    blocks = work.text.strip().split("\n\n")
    assert is_heading(blocks[0])
    cues = [b.split("\n")[0].lstrip("@") for b in blocks[2:]]
    speeches = [b.split("\n")[-1] for b in blocks[2:]]
    assert len(cues) >= 2 and len(set(cues)) == 2, work.text
    assert all(a != b for a, b in itertools.pairwise(cues)), work.text
    assert not any(PRONOUN.fullmatch(cue) or "(" in cue for cue in cues)
    assert len(set(speeches)) == len(speeches)
    assert mentions(work.text, keywords(situation, work.lang), work.lang)


def test_a_rewrite_after_a_sample_is_of_the_passage(studio: Studio) -> None:
    passage = (
        "Mara opened the bakery before dawn. She lit the old oven, kneaded the dough for "
        "the morning bread and watched the snow fall on the empty square."
    )
    sample = (
        "The old man was thin and gaunt with deep wrinkles in the back of his neck. "
        "Everything about him was old except his eyes and they were the same color as the "
        "sea and were cheerful and undefeated."
    )
    work = studio.rewrite(passage, sample=sample, seed=1)
    text = work.text
    assert len(mentions(text, keywords(passage, "en"), "en")) >= 2
    assert not mentions(text, {"gaunt", "wrinkles", "undefeated", "neck"}, "en")
    assert similarity(text, sample) < similarity(text, passage)


def test_noir_rewrites_keep_the_meaning_and_only_kept_ones_are_streamed() -> None:
    passage = "The train was late, so we walked home."
    result = CliRunner().invoke(
        app, ["write", "rewrite", passage, "--style", "noir", "-n", "2", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    streamed = [p.strip() for p in result.stdout.strip().split("\n\n") if p.strip()]
    assert len(streamed) == 2
    for version in streamed:
        assert rewrite_fault(version, passage, "en") is None
        assert mentions(version, {"train", "late", "walked", "home"}, "en")


def test_rewrites_are_steered_to_keep_the_passage_so_few_are_drawn_again(
    studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unsteered, 0 of 2 poetic rewrites of this passage kept its words in 10 draws (and 10 of
    16 Chinese rewrite requests of the eval failed); steered after a draw that lost them
    (its words raised until enough are written), both are kept within a few draws."""
    passage = "奶奶把收到的每一封信都放在一个铁盒子里。"
    judged: list[str | None] = []

    def counted(version: str, original: str, lang: Lang, sample: str = "") -> str | None:
        judged.append(rewrite_fault(version, original, lang, sample))
        return judged[-1]

    monkeypatch.setattr(tasks, "rewrite_fault", counted)
    work = studio.rewrite(passage, style="诗意", alternatives=2, seed=1)
    assert len(work.parts) == 2
    assert all(rewrite_fault(version, passage, "zh") is None for version in work.parts)
    assert len(judged) <= 5, judged


def test_the_passage_words_are_raised_each_until_said_and_not_at_the_start(gemma: Engine) -> None:
    tokenizer = gemma.tokenizer
    rule = FavourUnsaid(tokenizer, ["train", "home"], "en", lambda text: "home" in text)
    prompt = tokenizer.encode("Rewritten:")
    scores = torch.zeros(1, len(vocab_texts(tokenizer)))

    start = len(tokenizer.encode(""))  # a beginning-of-text token, if the tokenizer adds one

    def raised(text: str) -> set[str]:
        state = DecodeState([prompt + tokenizer.encode(text)[start:]], [len(prompt)])
        out = rule(state, scores.clone())
        return {vocab_texts(tokenizer)[i].strip().lower() for i in out[0].nonzero().view(-1)}

    assert raised("") == set()  # the first word is the model's own
    assert {"train", "home"} <= raised(" The")
    assert "train" not in raised(" The train") and "home" in raised(" The train")
    assert raised(" The train went home") == set()  # enough


@pytest.mark.parametrize(("topic", "kind"), [("a city under the sea", "plot twists"),
                                             ("海底的城市", "情节反转")])  # fmt: skip
def test_every_brainstorm_item_honours_the_kind(studio: Studio, topic: str, kind: str) -> None:
    work = studio.brainstorm(topic, kind, count=3, seed=1)
    lang = work.lang
    example_topics = "a haunted lighthouse a travelling circus 闹鬼的灯塔 流浪马戏团"
    check = item_check(lang, topic, kind, example_topics)
    assert len(work.parts) == 3
    assert all(check(item) is None for item in work.parts), work.parts
    assert not any(item in BRAINSTORM[lang] for item in work.parts)


def test_plot_help_answers_the_conflict(studio: Studio) -> None:
    work = studio.plot_help(
        "A girl finds a key that opens every door in town.", "the key starts to melt", 3, seed=1
    )
    assert all(mentions(way, {"key", "melt", "starts"}, "en") for way in work.parts)


@pytest.mark.parametrize(
    ("subject", "lang"), [("a night market in the rain", "en"), ("雨夜的小吃街", "zh")]
)
def test_a_description_is_of_its_subject_whole_and_its_own(
    studio: Studio, subject: str, lang: Lang
) -> None:
    # Unnudged, seed 1 described "a small room is full of black" (no night, market nor
    # rain) in 39 words.
    shown: list[str] = []
    mine = Studio(studio.engine, sink=shown.append)
    work = mine.describe(subject, seed=1)
    assert mentions(work.text, keywords(subject, lang), lang) == keywords(subject, lang)
    assert size(work.text, lang) >= DESCRIBE_LEAST[lang]
    assert not re.search(echo_pattern(DESCRIBE[lang].split("{subject}")[0], subject, 4, 4),
                         work.text)  # fmt: skip
    said = [key for s in sentences(work.text) if (key := sentence_key(s, lang))]
    assert len(said) == len(set(said))  # no sentence said twice
    assert "".join(shown).strip() == work.text  # what was shown is what is kept
    # Nor recited in Chinese: six characters of the subject in a row (named word by word,
    # seven of eight Chinese subjects opened with the whole of it)
    recited = [subject[i : i + 6] for i in range(len(subject) - 5) if lang == "zh"]
    assert not any(run in work.text for run in recited)


def test_a_description_does_not_open_by_saying_its_subject_back(studio: Studio) -> None:
    subject = "a night market in the rain"
    for seed in (1, 3):  # each opened "A night market in the rain." before the ban
        text = studio.describe(subject, seed=seed).text
        first = sentences(text)[0].strip(" .").lower()
        assert first not in (subject, subject.removeprefix("a ")), text


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_lyrics_never_loop_in_a_line_nor_borrow_the_example(studio: Studio, lang: str) -> None:
    topic = "leaving home for the city" if lang == "en" else "离开家乡去城市"
    work = studio.lyrics(topic, seed=2)
    lines = [line for line in work.text.split("\n") if line and not line.startswith("[")]
    assert not any(phrase_loop(line) for line in lines)
    assert not any(image in work.text.lower() for image in IMAGES[lang])
    assert not any(line in work.text for line in example_phrases(LYRICS[lang]))
    assert all(HAN.search(line) for line in lines) if lang == "zh" else True


@pytest.mark.parametrize("task", ["script", "lyrics", "describe", "brainstorm"])
def test_an_empty_topic_is_refused(task: str) -> None:
    result = CliRunner().invoke(app, ["write", task, "  "])
    assert result.exit_code == 2 and "is empty" in result.output
