"""A tiny real image model for the picture server and Draw panel tests: trained once per
test session (in the session's temporary folder) on four circles, so the tests share it."""

from __future__ import annotations

import shutil

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
