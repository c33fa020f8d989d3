"""A tiny real image model for the picture server and Draw panel tests: trained once per
test session (in the session's temporary folder) on four circles, so the tests share it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from musegpt.images import ImageModel, load_image_model
from musegpt.images.memory import remember_training_split
from musegpt.images.train import train_tiny_image_model

COLOURS = ("red", "blue", "green", "orange")


def circles() -> list[tuple[str, Image.Image]]:
    pictures = []
    for colour in COLOURS:
        picture = Image.new("RGB", (32, 32), "white")
        ImageDraw.Draw(picture).ellipse((4, 4, 28, 28), fill=colour)
        pictures.append((f"a {colour} circle", picture))
    return pictures


def tiny_image_model(tmp_path_factory: pytest.TempPathFactory) -> ImageModel:
    folder = tmp_path_factory.getbasetemp() / "tiny-image-model"
    trained = folder / "run" / "best" / "model.safetensors"
    if not trained.is_file():
        trained = train_tiny_image_model(folder, circles())
    return load_image_model(trained)


def remembering_image_model(tmp_path_factory: pytest.TempPathFactory) -> ImageModel:
    """The tiny model, copied, with its training split kept in its file: it draws with
    caption expansion (to the trained names) and the originality guard."""
    tiny_image_model(tmp_path_factory)  # trained once per session
    base = tmp_path_factory.getbasetemp() / "tiny-image-model"
    copy = base / "remembering" / "model.safetensors"
    if not copy.is_file():
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(base / "run" / "best" / "model.safetensors", copy)
        remember_training_split(copy, base / "pictures", expand="name")
    return load_image_model(copy)


def tiny_settings(batch_size: int, steps: int, layers: int = 2, width: int = 32) -> list[str]:
    """`musegpt train-images` settings for a run of a few seconds on the CPU."""
    settings = [f"n_layer={layers}", "n_head=2", f"n_embd={width}", f"batch_size={batch_size}"]
    settings += [f"max_iters={steps}", f"eval_interval={max(1, steps // 2)}", "eval_iters=1"]
    return [*settings, "dtype=float32", "device=cpu"]


def continued_records(
    tmp_path_factory: pytest.TempPathFactory,
    tiny: ImageModel,
    folder: Path,
    out: Path,
    option: str | list[str],
    batch_size: int,
    steps: int,
) -> tuple[dict[str, Any], list[str]]:
    """`musegpt train-images FOLDER --from` the tiny model's best checkpoint with `option`
    (e.g. `--flip`, or a list of arguments): the records' manifest and each training record's
    caption. Asserts that the command succeeded and that the records keep the base model's
    tokenizer."""
    from typer.testing import CliRunner

    from musegpt.cli.app import app
    from musegpt.data.dataset import PreparedCorpus

    base = tmp_path_factory.getbasetemp() / "tiny-image-model" / "run" / "best"
    options = [option] if isinstance(option, str) else option
    args = ["train-images", str(folder), "--out", str(out), "--from", str(base), *options]
    result = CliRunner().invoke(app, [*args, *tiny_settings(batch_size, steps)])
    assert result.exit_code == 0, result.output
    records = PreparedCorpus.open(out / "records")
    assert records.tokenizer.to_dict() == tiny.tokenizer.to_dict()  # the base's tokenizer
    ids = np.fromfile(out / "records" / "train.bin", dtype=records.manifest["dtype"])
    rows = ids.reshape(-1, tiny.tokenizer.record_length)[:, : tiny.tokenizer.caption_length]
    return records.manifest, [tiny.tokenizer.decode(row.tolist()) for row in rows]


def scorer_command(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, run: Path
) -> list[str]:
    """`musegpt train-scorer` on the tiny model's pictures, storing into a copy of the tiny
    model in `tmp_path` (settings for a run of a few steps follow)."""
    base = tmp_path_factory.getbasetemp() / "tiny-image-model"
    model_file = tmp_path / "model.safetensors"
    model_file.write_bytes((base / "run" / "best" / "model.safetensors").read_bytes())
    return ["train-scorer", str(base / "pictures"), "--model", str(model_file), "--out", str(run)]


def scoring_image_model(tmp_path_factory: pytest.TempPathFactory) -> ImageModel:
    """The tiny model, copied, with a caption-picture scorer trained for a few seconds on its
    four circles kept in its file: it reranks candidates by the scorer."""
    from musegpt.images.scorer import ScorerConfig, store_scorer
    from musegpt.images.scorer_train import train_scorer

    tiny = tiny_image_model(tmp_path_factory)
    base = tmp_path_factory.getbasetemp() / "tiny-image-model"
    copy = base / "scoring" / "model.safetensors"
    if not copy.is_file():
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(base / "run" / "best" / "model.safetensors", copy)
        config = ScorerConfig(
            width=32, steps=60, batch_size=4, learning_rate=3e-3, warmup_steps=5, variants=2,
            max_shift=1,
        )  # fmt: skip
        scorer = train_scorer(base / "pictures", tiny.tokenizer, config, base / "scorer-run")
        store_scorer(copy, scorer.model)
    return load_image_model(copy)
