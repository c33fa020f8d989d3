"""Caption expansion (a caption mapped to the names and tags the model was trained on) and the
originality guard (near-copies of training pictures are redrawn), on real data: a small
picture folder's rows and the tiny circle model the other picture tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from images_helpers import remembering_image_model, tiny_image_model

from musegpt.images import ImageModel
from musegpt.images.memory import remember_training_split
from musegpt.images.model import ImageRequestError
from musegpt.images.originality import NEAR_COPY_SHARE, TrainingGrids
from musegpt.images.prompting import ConceptVocabulary
from musegpt.images.train import with_mirrors

ROWS: list[dict[str, Any]] = [
    {
        "id": "noto-1f34e", "set": "noto", "split": "train",
        "caption_en": "red apple", "caption_zh": "红苹果",
        "tags_en": ["apple", "fruit", "red"], "tags_zh": ["水果", "红", "苹果"],
    },
    {  # the same emoji drawn by another set: one concept
        "id": "openmoji-black-1f34e", "set": "openmoji-black", "split": "train",
        "caption_en": "red apple", "caption_zh": "红苹果",
        "tags_en": ["apple", "fruit", "red"], "tags_zh": ["水果", "红", "苹果"],
    },
    {
        "id": "noto-1f355", "set": "noto", "split": "train",
        "caption_en": "pizza", "caption_zh": "披萨",
        "tags_en": ["cheese", "food", "slice"], "tags_zh": ["比萨", "食物", "一片比萨"],
    },
    {
        "id": "noto-1f436", "set": "noto", "split": "train",
        "caption_en": "dog face", "caption_zh": "狗脸",
        "tags_en": ["dog", "face", "pet"], "tags_zh": ["狗", "脸", "宠物"],
    },
    {
        "id": "noto-1f1ef-1f1f5", "set": "noto", "split": "train",
        "caption_en": "flag: Japan", "caption_zh": "旗: 日本",
        "tags_en": ["flag", "JP"], "tags_zh": ["旗", "JP"],
    },
    {  # held out: never part of the vocabulary
        "id": "noto-1f34f", "set": "noto", "split": "val",
        "caption_en": "green apple", "caption_zh": "青苹果",
        "tags_en": ["apple", "fruit", "green"], "tags_zh": ["水果", "苹果", "青"],
    },
]  # fmt: skip


@pytest.fixture(scope="module")
def vocabulary() -> ConceptVocabulary:
    return ConceptVocabulary.from_rows(ROWS)


def test_vocabulary_holds_one_concept_per_training_emoji(vocabulary: ConceptVocabulary) -> None:
    assert sorted(c.en for c in vocabulary.concepts) == [
        "dog face", "flag: Japan", "pizza", "red apple",
    ]  # fmt: skip
    again = ConceptVocabulary.from_metadata(vocabulary.to_metadata())
    assert again.concepts == vocabulary.concepts


@pytest.mark.parametrize(
    ("caption", "name"),
    [
        ("a shiny red apple from the orchard", "red apple"),
        ("two apples", "red apple"),  # plural -> the trained singular
        ("a slice of cheese pizza", "pizza"),
        ("the flag of japan", "flag: Japan"),
        ("一个红苹果", "红苹果"),  # Chinese: the Chinese name
        ("一块披萨", "披萨"),
        ("可爱的狗脸", "狗脸"),
        ("日本的国旗", "旗: 日本"),
    ],
)
def test_a_paraphrase_is_drawn_as_the_trained_name(
    vocabulary: ConceptVocabulary, caption: str, name: str
) -> None:
    expansion = vocabulary.expand(caption, "name")
    assert expansion.caption == name
    assert expansion.score > 0


def test_tags_mode_gives_the_concepts_tags_in_the_tag_caption_format(
    vocabulary: ConceptVocabulary,
) -> None:
    english = vocabulary.expand("a red apple", "tags").caption
    assert sorted(english.split()) == ["apple", "fruit", "red"]
    chinese = vocabulary.expand("一个红苹果", "tags").caption
    assert sorted(chinese) == sorted("水果红苹果")  # run together, as training wrote them


def test_a_caption_with_nothing_in_common_is_drawn_as_written(
    vocabulary: ConceptVocabulary,
) -> None:
    for caption in ("a spaceship over the moon", "宇宙飞船"):
        expansion = vocabulary.expand(caption, "name")
        assert (expansion.caption, expansion.concept) == (caption, None)
    assert vocabulary.expand("a red apple", "off").caption == "a red apple"


# ---------------------------------------------------------------- in the model


@pytest.fixture(scope="module")
def remembering(tmp_path_factory: pytest.TempPathFactory) -> ImageModel:
    return remembering_image_model(tmp_path_factory)


def copy_shares(model: ImageModel, pictures: list[Any]) -> np.ndarray[Any, Any]:
    pixels = np.stack([np.asarray(p.resize((8, 8))) for p in pictures])
    grids = model.training_grids
    assert grids is not None
    return grids.copy_share(model.tokenizer.encode_pixels(pixels) - model.tokenizer.first_code)


def test_the_model_file_keeps_its_training_split(remembering: ImageModel) -> None:
    assert remembering.vocabulary is not None and len(remembering.vocabulary) == 4
    # its four training pictures, and each mirrored
    assert remembering.training_grids is not None and len(remembering.training_grids) == 8
    assert remembering.expand == "name"
    grids = remembering.training_grids
    assert TrainingGrids.from_metadata(grids.to_metadata()).codes.tolist() == grids.codes.tolist()


def test_a_mirrored_training_picture_is_a_near_copy(remembering: ImageModel) -> None:
    tokenizer = remembering.tokenizer
    side = tokenizer.resolution
    picture = np.full((1, side, side, 3), 255, dtype=np.uint8)
    picture[0, :, : side // 2] = (200, 30, 30)  # red left half: not its own mirror image
    mirror = np.ascontiguousarray(picture[:, :, ::-1])

    def grids(pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return tokenizer.encode_pixels(pixels) - tokenizer.first_code

    assert not TrainingGrids(grids(picture)).near_copies(grids(mirror)).any()
    assert TrainingGrids(grids(with_mirrors(picture))).near_copies(grids(mirror)).all()


def test_draw_reads_the_expanded_caption(remembering: ImageModel) -> None:
    picture = remembering.draw("two big red circles", size=8, seed=1, guard=False)[0]
    assert (picture.info["prompt"], picture.info["caption"]) == (
        "two big red circles",
        "a red circle",
    )
    literal = remembering.draw("two big red circles", size=8, seed=1, expand=False)[0]
    assert literal.info["caption"] == "two big red circles"


def test_a_forced_near_copy_is_redrawn(remembering: ImageModel) -> None:
    # Greedy drawing of a training caption replays its training picture: a near-copy.
    options: dict[str, Any] = {"n": 2, "size": 8, "seed": 5, "temperature": 0, "style": "tiny"}
    copies = remembering.draw("a red circle", guard=False, **options)
    assert (copy_shares(remembering, copies) >= NEAR_COPY_SHARE).all()
    assert {p.info["redraws"] for p in copies} == {"0"}
    guarded = remembering.draw("a red circle", **options)
    assert (copy_shares(remembering, guarded) < NEAR_COPY_SHARE).all()
    assert all(1 <= int(p.info["redraws"]) <= 4 for p in guarded)
    # the redraw is seeded from the request: the same request gives the same pictures
    again = remembering.draw("a red circle", **options)
    assert [p.tobytes() for p in again] == [p.tobytes() for p in guarded]


def test_expansion_needs_a_kept_vocabulary(tmp_path_factory: pytest.TempPathFactory) -> None:
    plain = tiny_image_model(tmp_path_factory)
    assert plain.vocabulary is None and plain.expansion_mode() == "off"
    with pytest.raises(ImageRequestError, match="no training vocabulary"):
        plain.draw("a red circle", size=8, expand=True)


def test_remember_refuses_a_folder_without_training_pictures(
    remembering: ImageModel, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    (tmp_path / "images.jsonl").write_text("", encoding="utf-8")
    model_file = tmp_path_factory.getbasetemp() / "tiny-image-model" / "run" / "best"
    with pytest.raises(ValueError, match="no pictures in its train split"):
        remember_training_split(model_file / "model.safetensors", tmp_path)


def test_cli_draw_says_what_the_model_read_and_refuses_expansion_it_cannot_do(
    remembering: ImageModel, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from musegpt.cli.app import app

    base = tmp_path_factory.getbasetemp() / "tiny-image-model"
    args = ["draw", "two big red circles", "--size", "8x8", "--seed", "1"]
    out = str(tmp_path / "x.png")
    expanded = CliRunner().invoke(
        app, [*args, "--out", out, "--model", str(base / "remembering" / "model.safetensors")]
    )
    assert expanded.exit_code == 0, expanded.output
    assert 'drawn as "a red circle"' in expanded.output
    plain = CliRunner().invoke(
        app, [*args, "--expand", "--out", out, "--model", str(base / "run" / "best")]
    )
    assert plain.exit_code != 0 and "keeps no training vocabulary" in plain.output
    assert "Traceback" not in plain.output
