"""The caption-picture scorer (a tiny CLIP, `musegpt/images/scorer.py`) and reranking drawn
candidates by it, on the tiny real circle model the other picture tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from images_helpers import COLOURS, circles, scorer_command, scoring_image_model
from typer.testing import CliRunner

from musegpt.cli.app import app
from musegpt.images import ImageModel, load_image_model
from musegpt.images.scorer import ScorerConfig, load_scorer_config


@pytest.fixture(scope="module")
def scoring(tmp_path_factory: pytest.TempPathFactory) -> ImageModel:
    return scoring_image_model(tmp_path_factory)


def test_the_scorer_ranks_a_matching_caption_above_the_others(scoring: ImageModel) -> None:
    assert scoring.scorer is not None
    pixels = np.stack([scoring.tokenizer.pixels(picture) for _, picture in circles()])
    for number, colour in enumerate(COLOURS):
        similarity = scoring.scorer.similarity(f"a {colour} circle", pixels)
        assert int(similarity.argmax()) == number, (colour, similarity)


def test_rerank_keeps_the_candidate_the_scorer_likes_best(scoring: ImageModel) -> None:
    # n pictures with rerank k draw the same n*k candidates (one batch, one generator) as
    # n*k pictures without it; each kept one must be the scorer's best of its k.
    assert scoring.scorer is not None
    options = {"style": "tiny", "seed": 3, "guidance": 2.0, "size": 8, "temperature": 1.5}
    candidates = scoring.draw("a red circle", n=6, rerank=1, **options)  # type: ignore[arg-type]
    kept = scoring.draw("a red circle", n=2, rerank=3, **options)  # type: ignore[arg-type]
    pixels = np.stack([np.asarray(p) for p in candidates])
    scores = scoring.scorer.similarity("a red circle", pixels).tolist()
    assert len({p.tobytes() for p in candidates}) > 2  # the candidates differ
    for slot, picture in enumerate(kept):
        group = scores[3 * slot : 3 * slot + 3]
        best = candidates[3 * slot + int(np.argmax(group))]
        assert np.array_equal(np.asarray(picture), np.asarray(best))
        assert float(picture.info["score"]) == pytest.approx(max(group), abs=1e-3)
        assert picture.info["rerank"] == "3"


def test_train_scorer_stores_a_scorer_the_model_then_draws_with(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, scoring: ImageModel
) -> None:
    args = scorer_command(tmp_path_factory, tmp_path, tmp_path / "run")
    args += ["steps=3", "batch_size=4", "variants=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "no validation split" in result.output and "stored in" in result.output
    assert load_image_model(tmp_path / "model.safetensors").scorer is not None
    # a bad setting is one line naming it, not a traceback
    bad = CliRunner().invoke(app, [*args[:7], "stepz=3"])
    assert bad.exit_code != 0 and "unknown scorer setting(s): stepz" in bad.output


def test_scorer_configs_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "scorer.yaml"
    config.write_text("steps: 10\nlearning_rate: 1e-3\n")
    loaded = load_scorer_config(config, ["batch_size=8"])
    assert (loaded.steps, loaded.learning_rate, loaded.batch_size) == (10, 1e-3, 8)
    with pytest.raises(ValueError, match="steps must be a number"):
        ScorerConfig.from_dict({"steps": "many"})
    with pytest.raises(ValueError, match="not key=value"):
        ScorerConfig().with_overrides(["steps"])


def test_train_scorer_resumes_from_its_checkpoint(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, scoring: ImageModel
) -> None:
    import torch

    run = tmp_path / "run"
    args = scorer_command(tmp_path_factory, tmp_path, run)
    args += ["batch_size=4", "variants=1", "checkpoint_every=1"]
    first = CliRunner().invoke(app, [*args, "steps=2"])
    assert first.exit_code == 0, first.output
    assert torch.load(run / "scorer-last.pt", weights_only=False)["step"] == 2
    again = CliRunner().invoke(app, [*args, "steps=4", "--resume"])
    assert again.exit_code == 0, again.output
    assert "resuming at step 2" in again.output
    assert torch.load(run / "scorer-last.pt", weights_only=False)["step"] == 4
    assert not list(run.glob(".scorer-last.pt.*"))  # no temporary left beside it


def test_a_scorer_ranks_pictures_of_another_resolution_shrunk_to_its_own(
    scoring: ImageModel,
) -> None:
    # a 64x64 model can rerank with a scorer trained on 32x32 pictures: here the tiny
    # model's 8x8 scorer reads the circles enlarged to 16x16 as it reads them at 8x8
    assert scoring.scorer is not None
    pixels = np.stack([scoring.tokenizer.pixels(picture) for _, picture in circles()])
    enlarged = pixels.repeat(2, axis=1).repeat(2, axis=2)
    for colour in COLOURS:
        caption = f"a {colour} circle"
        same = scoring.scorer.similarity(caption, enlarged)
        assert same.tolist() == pytest.approx(scoring.scorer.similarity(caption, pixels).tolist())


def test_copy_scorer_needs_the_same_caption_tokenizer(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, scoring: ImageModel
) -> None:
    from PIL import Image

    from musegpt.images.scorer import copy_scorer
    from musegpt.images.train import train_tiny_image_model

    base = tmp_path_factory.getbasetemp() / "tiny-image-model"
    source = base / "scoring" / "model.safetensors"
    same = tmp_path / "same.safetensors"
    same.write_bytes((base / "run" / "best" / "model.safetensors").read_bytes())
    assert load_image_model(same).scorer is None
    copy_scorer(source, same)
    copied = load_image_model(same).scorer
    assert copied is not None and scoring.scorer is not None
    pixels = np.stack([scoring.tokenizer.pixels(picture) for _, picture in circles()])
    assert copied.similarity("a red circle", pixels).tolist() == pytest.approx(
        scoring.scorer.similarity("a red circle", pixels).tolist()
    )
    # other captions, another caption tokenizer: refused, naming what to do instead
    squares = [(f"{c} square {c} box", Image.new("RGB", (8, 8), c)) for c in ("teal", "pink")]
    other = train_tiny_image_model(tmp_path / "other", squares)
    with pytest.raises(ValueError, match=r"another tokenizer.*musegpt train-scorer --model"):
        copy_scorer(source, other)
    with pytest.raises(ValueError, match="keeps no caption-picture scorer"):
        copy_scorer(other, same)
