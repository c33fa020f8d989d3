"""A tiny real image model for the picture server and Draw panel tests: trained once per
test session (in the session's temporary folder) on four circles, so the tests share it."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from musegpt.images import ImageModel, load_image_model
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
