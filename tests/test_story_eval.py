"""`musegpt eval stories` (issue 14, part 6): the premise set, the measures, and a run on
the default model that is resumable (each story appended as it is finished)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from musegpt.cli.app import app
from musegpt.engines.base import Engine
from musegpt.studio.story import BIBLE_EXAMPLE, SUMMARY_EXAMPLE
from musegpt.studio.story_eval import (
    TABLE_END,
    TABLE_START,
    hero_beats,
    hero_focus,
    leaked,
    load_rows,
    premises,
    repeated_sentences,
    unfinished,
    write_table,
)


def test_the_premise_set_has_twenty_per_language_none_from_the_examples() -> None:
    sets = premises()
    for lang in ("en", "zh"):
        assert len(sets[lang]) >= 20 and len(set(sets[lang])) == len(sets[lang])
        examples = BIBLE_EXAMPLE[lang] + SUMMARY_EXAMPLE[lang]
        assert not [p for p in sets[lang] if p in examples]
    assert "灯塔" not in "".join(sets["zh"]) and "lighthouse" not in " ".join(sets["en"])


def test_the_chapter_measures() -> None:
    assert repeated_sentences("Lena woke up early. Lena woke up early.", "") == 1
    assert repeated_sentences("Lena woke up early.", "Lena woke up early.") == 1
    assert repeated_sentences("林小雪醒得很早。她走进了雨里。", "") == 0
    assert unfinished("Lena woke up and") and not unfinished("Lena woke up.")
    assert not unfinished("他说：“好。”")
    assert leaked("Lena woke.\nThis chapter: Lena goes home.", "en")
    assert leaked("阿七醒了。\n第二章\n", "zh") and not leaked("阿七醒了。", "zh")


def test_the_hero_measures() -> None:
    # The hero is the one described with a premise word (Ember), not the first listed.
    cast = [{"name": "Wren Hale", "description": "a girl"},
            {"name": "Ember", "description": "a dragon afraid of fire"}]  # fmt: skip
    scenes = [
        {"beat": "Ember hides from the fire.", "text": "Ember hid. Ember wept. Wren Hale came."},
        {"beat": "Wren finds a cave.", "text": "Wren went in. Wren saw nothing."},
        {"beat": "Nobody comes.", "text": "The rain fell."},  # names no one: not counted
    ]
    bible = {"title": "T", "setting": "S", "style": "S", "synopsis": "S.", "characters": cast}
    project = {"premise": "a dragon afraid of fire", "lang": "en", "bible": bible,
               "scenes": scenes}  # fmt: skip
    rows = [{"chapters": [{}, {}, {}], "project": project}]
    assert hero_beats(rows) == [True, False, False]
    # "Wren Hale" and "Wren" in one chapter count once each time the name is said.
    assert hero_focus(rows) == [2 / 3, 0.0]


def test_the_table_is_rewritten_between_its_markers_and_the_page_kept(tmp_path: Path) -> None:
    page = tmp_path / "stories-eval.md"
    page.write_text(f"# Stories\n\nBefore.\n\n{TABLE_START}\nold\n{TABLE_END}\n\nAfter.\n")
    text = write_table(page, [], "musegpt eval stories")
    assert text.startswith("# Stories\n\nBefore.") and text.endswith("After.\n")
    assert "old" not in text and "`musegpt eval stories`" in text
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"key": "a"}\n{"key": "b", "cut sh')  # a killed run's last line
    assert load_rows(rows) == [{"key": "a"}]
    # A chapter holding U+2028 (seen) is one row, not two broken halves.
    rows.write_text('{"key": "a", "text": "x\u2028y"}\n', "utf-8")
    assert load_rows(rows) == [{"key": "a", "text": "x\u2028y"}]


def test_eval_stories_on_the_default_model_resumes(gemma: Engine, tmp_path: Path) -> None:
    out = tmp_path / "stories-eval.md"
    args = ["eval", "stories", "--limit", "1", "--chapters", "1", "--chapter-tokens", "40",
            "--candidates", "1", "--lang", "zh", "--out", str(out)]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    rows = load_rows(out.with_suffix(".jsonl"))
    assert len(rows) == 1 and rows[0]["premise"] == premises()["zh"][0]
    row = rows[0]
    assert row["error"] or (row["plan_valid"] and len(row["chapters"]) == 1)
    assert row["seconds"] > 0 and set(row["stages"]) >= {"plan", "outline", "chapters"}
    page = out.read_text("utf-8")
    assert TABLE_START in page and "| stories | 1 |" in page
    again = CliRunner().invoke(app, args)  # everything asked is already measured
    assert again.exit_code == 0, again.output
    assert len(load_rows(out.with_suffix(".jsonl"))) == 1
    assert json.loads(out.with_suffix(".jsonl").read_text("utf-8"))["key"] == row["key"]
    wrong = CliRunner().invoke(app, [*args[:-4], "--lang", "fr", "--out", str(out)])
    assert wrong.exit_code != 0 and "--lang takes en and/or zh" in wrong.output
