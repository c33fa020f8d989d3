"""The studio on the embedded default model (Gemma 3 270M through llama.cpp): each task's
structure holds on real model output, in English and Chinese."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from musegpt.cli.app import app
from musegpt.engines.base import Engine
from musegpt.engines.llama import LlamaCppEngine
from musegpt.studio import Studio
from musegpt.studio.evaluate import SCAFFOLDING, valid
from musegpt.studio.script import fountain_elements
from musegpt.studio.story import premise_limit
from musegpt.studio.tasks import LYRICS, TITLE_END, StudioError, title_opening
from musegpt.studio.text import HAN, example_phrases, similarity


def no_scaffolding(text: str) -> bool:
    return not any(label in text for label in SCAFFOLDING)


def test_default_model_is_gemma_on_llama_cpp(gemma: Engine) -> None:
    assert isinstance(gemma, LlamaCppEngine)
    assert gemma.tokenizer.vocab_size == 262144 and gemma.context_length >= 4096


def test_our_greedy_decoding_equals_llama_cpps_own(gemma: Engine) -> None:
    assert isinstance(gemma, LlamaCppEngine)
    prompt = "The old lighthouse keeper"
    ours = gemma.complete(prompt, temperature=0, max_new_tokens=24)[0]
    theirs = gemma.llama.create_completion(prompt, max_tokens=24, temperature=0.0)
    assert ours.text == theirs["choices"][0]["text"]


def test_chinese_streams_whole_characters(gemma: Engine) -> None:
    pieces = list(gemma.stream("床前明月光，", temperature=0.7, seed=3, max_new_tokens=30))
    text = "".join(pieces)
    assert HAN.search(text) and "\ufffd" not in text
    assert text == gemma.generate("床前明月光，", temperature=0.7, seed=3, max_new_tokens=30)


def test_banned_phrase_never_appears_on_llama_cpp(gemma: Engine) -> None:
    free = gemma.generate("Roses are red, violets are", temperature=0, max_new_tokens=8)
    word = free.split()[0]
    constrained = gemma.generate(
        "Roses are red, violets are", temperature=0, max_new_tokens=8, banned=[word]
    )
    assert word not in constrained


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_lyrics_repeat_the_chorus_word_for_word(studio: Studio, lang: str) -> None:
    topic = "leaving home for the city" if lang == "en" else "离开家乡去城市"
    work = studio.lyrics(topic, seed=2)
    assert work.lang == lang and valid(work)
    labels = [part.split("\n")[0] for part in work.parts]
    assert len(labels) == 6 and labels[1] == labels[3] == labels[5]
    chorus = {part for part in work.parts if part.split("\n")[0] == labels[1]}
    assert len(chorus) == 1
    assert not any(line in work.text for line in example_phrases(LYRICS[lang]))


def test_brainstorm_gives_exactly_n_distinct_ideas_reproducibly(studio: Studio) -> None:
    work = studio.brainstorm("a city under the sea", "story titles", count=4, seed=7)
    assert len(work.parts) == 4
    # Titles, not sentences or lead-ins, and not one title four times ("Sea-faring people:
    # the sea meets the shore:", "Sea-faring women: …" at this seed before).
    assert not any(TITLE_END.search(title) for title in work.parts)
    assert len({title_opening("en")(title) for title in work.parts}) == 4
    assert all(
        similarity(a, b) <= 0.5 for i, a in enumerate(work.parts) for b in work.parts[i + 1 :]
    )
    assert (
        studio.brainstorm("a city under the sea", "story titles", count=4, seed=7).parts
        == work.parts
    )


def test_script_is_fountain_with_a_heading_and_dialogue(studio: Studio) -> None:
    work = studio.script("Two old friends meet at a funeral and argue about a debt.", seed=1)
    elements = fountain_elements(work.text)
    assert elements["Slug"] >= 1 and elements["Dialog"] >= 2
    assert no_scaffolding(work.text)


def test_chinese_description_is_clean(studio: Studio) -> None:
    work = studio.describe("雨夜的旧书店", seed=4)
    assert work.lang == "zh" and HAN.search(work.text)
    assert valid(work) and no_scaffolding(work.text)


def test_rewrite_gives_distinct_alternatives(studio: Studio) -> None:
    work = studio.rewrite(
        "The train was late, so we walked home in the snow.", style="fairy tale",
        alternatives=2, seed=5,
    )  # fmt: skip
    assert len(work.parts) == 2 and similarity(*work.parts) <= 0.8
    assert all(no_scaffolding(p) for p in work.parts)


def test_plot_help_offers_distinct_ways(studio: Studio) -> None:
    work = studio.plot_help(
        "A girl finds a key that opens every door in town.", "the key starts to melt", 3, seed=2
    )
    assert len(work.parts) == 3 and no_scaffolding(work.text)
    assert all(
        similarity(a, b) <= 0.5 for i, a in enumerate(work.parts) for b in work.parts[i + 1 :]
    )


def test_story_project_is_saved_resumed_and_extended(studio: Studio, tmp_path: Path) -> None:
    folder = tmp_path / "robot"
    first = studio.story("a robot who discovers love", folder, scenes=1, scene_tokens=80, seed=1)
    saved = json.loads((folder / "story.json").read_text())
    assert saved["bible"]["characters"] and len(saved["scenes"]) == 1
    assert first.parts[0] and no_scaffolding(first.text)
    assert (folder / "story.md").read_text().startswith(f"# {saved['bible']['title']}")
    # Run again with one more chapter: the bible and chapter 1 stay as they were.
    more = studio.story("", folder, more=1, seed=2)
    again = json.loads((folder / "story.json").read_text())
    assert again["bible"] == saved["bible"]
    kept, before = dict(again["scenes"][0]), dict(saved["scenes"][0])
    # Chapter 1's summary is written only when chapter 2 needs it (issue 14).
    assert not before.pop("summary") and kept.pop("summary")
    assert len(again["scenes"]) == 2 and kept == before
    assert more.parts[0] == first.parts[0] and more.parts[1]


def test_an_over_long_premise_is_refused_before_planning(studio: Studio, tmp_path: Path) -> None:
    """A 20,000-word premise once sat in "Planning the story bible…" for ten minutes."""
    premise = " ".join(["the keeper climbs the stairs"] * 4000)
    with pytest.raises(StudioError, match=r"the premise is \d+ tokens; at most 2048 fit beside"):
        studio.story(premise, tmp_path / "long", seed=1)
    assert not (tmp_path / "long").exists()
    # A premise of a few sentences is far inside the limit.
    assert len(studio.engine.tokenize("a robot who discovers love " * 20)) < premise_limit(8192)


def test_cli_writes_streams_and_saves_markdown(tmp_path: Path) -> None:
    out = tmp_path / "piece.md"
    result = CliRunner().invoke(
        app, ["write", "describe", "an abandoned greenhouse", "--seed", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("# an abandoned greenhouse") and "seed: 3" in page
    body = page.split("\n\n")[1].strip()
    assert body and body in result.stdout


def test_cli_reports_bad_input_clearly(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["write", "describe", "x", "--model", "no-such-model"])
    assert result.exit_code == 2 and "unknown model 'no-such-model'" in result.output
    result = runner.invoke(app, ["write", "describe", "x", "--lang", "fr"])
    assert result.exit_code == 2 and "--lang must be en or zh" in result.output
    result = runner.invoke(app, ["write", "rewrite", "some text"])
    assert result.exit_code == 2 and "--style" in result.output
    result = runner.invoke(app, ["write", "story", "--project", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "needs a premise" in result.output


def test_the_music_grammar_holds_on_gemmas_vocabulary(gemma: Engine) -> None:
    """The ABC constraint on a 262k-token vocabulary of multi-character tokens: the tune
    is valid ABC whose bars music21 reads as exactly one bar each."""
    from fractions import Fraction

    from musegpt.music.abc import header_for
    from musegpt.music.compose import compose_headers
    from musegpt.music.evaluate import measure_durations

    header = header_for("a reel in D major")
    tune = compose_headers(gemma, [header], bars=2, seed=1)[0]
    bar = Fraction(header.metre) * 4
    notes = tune.score().flatten().notesAndRests
    total = sum(Fraction(n.duration.quarterLength).limit_denominator(96) for n in notes)
    assert total == 2 * bar, tune.abc  # a pick-up shortens the last bar by as much
    # music21 makes measures only from two plain "|" on; when it does, each is one bar
    durations = measure_durations(tune.score())
    assert durations in ([], [bar, bar]) or (
        len(durations) == 3 and durations[0] + durations[2] == bar and durations[1] == bar
    ), tune.abc
    assert tune.body.rstrip().endswith(("|]", ":|")), tune.abc


def test_sonnet_words_are_cased_as_words(studio: Studio) -> None:
    """Gemma can spell dictionary words from mixed-case pieces ("oCheLtreE", "bEeN"); the
    form's constraint lets a word go on only in its own case."""
    import re

    from musegpt.forms.constraints import MIXED, letter_case

    work = studio.poem("autumn rain", form="shakespearean-sonnet", seed=1)
    words = re.findall(r"[A-Za-z']+", work.text)
    assert len(words) > 40
    assert [w for w in words if letter_case(w) == MIXED] == []
