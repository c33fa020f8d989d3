"""`musegpt eval images` measures on a tiny model trained on four circles: it copies them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from images_helpers import COLOURS, tiny_image_model
from PIL import Image, ImageDraw

from musegpt.images import ImageModel
from musegpt.images.evaluate import (
    EvalCaption,
    build_reference,
    eval_captions,
    evaluate_images,
    examples_grid,
    markdown_report,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ImageModel:
    return tiny_image_model(tmp_path_factory)


def circle_folder(folder: Path) -> Path:
    """Circles of each colour in three sizes: two for training, one held out."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for colour in COLOURS:
        for margin, split in ((4, "train"), (6, "train"), (5, "test")):
            picture = Image.new("RGB", (32, 32), "white")
            ImageDraw.Draw(picture).ellipse((margin, margin, 32 - margin, 32 - margin), fill=colour)
            path = f"images/{colour}-{margin}.png"
            picture.save(folder / path)
            caption = f"a {colour} circle"
            rows.append({"id": f"{colour}-{margin}", "path": path, "caption_en": caption,
                         "style": "tiny", "group": colour, "split": split})  # fmt: skip
    (folder / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_the_caption_set_is_large_and_bilingual() -> None:
    captions = eval_captions()
    assert len(captions) >= 100
    assert {c.lang for c in captions} == {"en", "zh"}
    assert {c.kind for c in captions} == {"paraphrase", "held-out"}


def test_eval_measures_fidelity_and_finds_near_copies(tiny: ImageModel, tmp_path: Path) -> None:
    captions = [EvalCaption(f"a {c} circle", "en", c, "paraphrase") for c in ("red", "blue")]
    reference = build_reference(tiny.tokenizer, circle_folder(tmp_path))
    report = evaluate_images(tiny, reference, per_caption=2, captions=captions, guidance=1.0)
    assert report.classifier_accuracy == 1.0
    assert report.fidelity() >= 0.5
    # The tiny model has learnt its four pictures by heart: its drawings are copies.
    assert report.near_copy_share >= 0.5
    assert report.nearest_rmse < 40
    text = markdown_report(report, "musegpt eval images", "this machine")
    assert "| all captions (2) |" in text and "near-copies" in text
    grid = examples_grid(report.results)
    assert grid.height > 2 * 96
