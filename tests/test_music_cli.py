"""`musegpt compose` and `musegpt eval music` with a small real model saved to a file."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from test_music import TUNES, measures, tiny_engine
from typer.testing import CliRunner

from musegpt.cli.app import app
from musegpt.model.io import save_model
from musegpt.tokenizer import CharTokenizer

pytest.importorskip("music21", reason="music tests need music21: pip install music21")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    engine = tiny_engine(CharTokenizer.train([TUNES]), steps=40)
    return save_model(tmp_path_factory.mktemp("model") / "tiny.safetensors", engine.model,
                      engine.tokenizer)  # fmt: skip


def test_compose_writes_abc_and_midi(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune.abc"
    result = CliRunner().invoke(
        app,
        ["compose", "a lively jig in D major", "--bars", "4", "--seed", "1",
         "--model", str(model_file), "--out", str(out), "--midi"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    abc = out.read_text(encoding="utf-8")
    assert abc.startswith("X:1\nT:Lively Jig\nR:jig\nM:6/8\nL:1/8\nK:D\n")
    assert measures(abc) == [Fraction(3)] * 4
    assert out.with_suffix(".mid").read_bytes().startswith(b"MThd")


def test_compose_needs_out_for_files(model_file: Path) -> None:
    result = CliRunner().invoke(app, ["compose", "a reel", "--model", str(model_file), "--wav"])
    assert result.exit_code == 2 and "--out" in result.output
