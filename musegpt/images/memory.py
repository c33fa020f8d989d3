"""What an image model keeps of its training split for drawing, stored in its model file:
the names and tags its captions came from (caption expansion, `prompting.py`) and its
pictures' token grids (the originality guard, `originality.py`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from musegpt.images.originality import GRIDS_KEY, TrainingGrids
from musegpt.images.prompting import CONCEPTS_KEY, EXPAND_KEY, ConceptVocabulary, ExpandMode
from musegpt.images.tokenizer import ImageTokenizer
from musegpt.images.train import ROWS_FILE, load_pixels, read_pictures, with_mirrors
from musegpt.model.io import load_model, read_metadata, save_model


def training_memory(
    tokenizer: ImageTokenizer, folder: str | Path
) -> tuple[ConceptVocabulary, TrainingGrids]:
    """The training split of picture folder `folder`: its concepts and its token grids, each
    picture also mirrored (a mirrored training picture is as much a copy)."""
    folder = Path(folder).expanduser()
    train = [p for p in read_pictures(folder) if p.split == "train"]
    if not train:
        raise ValueError(f"{folder} has no pictures in its train split")
    rows: list[dict[str, Any]] = [
        json.loads(line)
        for line in (folder / ROWS_FILE).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    pixels = with_mirrors(load_pixels(train, tokenizer.resolution))
    codes = tokenizer.encode_pixels(pixels) - tokenizer.first_code
    return ConceptVocabulary.from_rows(rows), TrainingGrids(codes)


def remember_training_split(
    model_file: str | Path, folder: str | Path, expand: ExpandMode | None = None
) -> tuple[ConceptVocabulary, TrainingGrids]:
    """Store the training split of `folder` in the image model file `model_file` (rewritten
    with the same weights); `expand`, when given, becomes the model's default expansion."""
    gpt, tokenizer = load_model(model_file)
    if not isinstance(tokenizer, ImageTokenizer):
        raise ValueError(f"{model_file} is a text model, not an image model")
    vocabulary, grids = training_memory(tokenizer, folder)
    meta = read_metadata(model_file)
    for own in ("config", "tokenizer", "format"):  # save_model writes these itself
        meta.pop(own, None)
    meta[CONCEPTS_KEY] = vocabulary.to_metadata()
    meta[GRIDS_KEY] = grids.to_metadata()
    if expand is not None:
        meta[EXPAND_KEY] = expand
    save_model(Path(model_file), gpt, tokenizer, meta)
    return vocabulary, grids
