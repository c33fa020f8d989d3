"""Laying several pictures out: a contact sheet, or numbered file names."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

GAP = 8  # white pixels between pictures and around the sheet


def contact_sheet(images: Sequence[Image.Image]) -> Image.Image:
    """The pictures in a near-square grid, row by row, on white."""
    if not images:
        raise ValueError("a contact sheet needs at least one picture")
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    sheet = Image.new(
        "RGB",
        (columns * (width + GAP) + GAP, rows * (height + GAP) + GAP),
        (255, 255, 255),
    )
    for i, image in enumerate(images):
        row, column = divmod(i, columns)
        sheet.paste(image, (GAP + column * (width + GAP), GAP + row * (height + GAP)))
    return sheet


def numbered_paths(target: Path, n: int) -> list[Path]:
    """apple.png -> apple-1.png ... apple-n.png."""
    return [
        target.with_name(f"{target.stem}-{i}{target.suffix or '.png'}") for i in range(1, n + 1)
    ]
