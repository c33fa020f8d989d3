"""Training records of an image model: left-right flips of mirrorable pictures (`--flip`),
pictures moved by a few pixels (`--shift`), groups read more often (`--focus`), with a
continued run keeping its base model's tokenizer, on the tiny real circle model the other
picture tests share."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from images_helpers import continued_records, tiny_image_model, tiny_settings
from PIL import Image, ImageDraw

from musegpt.images import ImageModel
from musegpt.images.train import Picture, encode_records, focused, mirrorable, shift_offset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ImageModel:
    return tiny_image_model(tmp_path_factory)


def picture(caption: str, group: str = "food-drink", tags: tuple[str, ...] = ()) -> Picture:
    return Picture(Path(f"{caption}.png"), (caption,), "tiny", group, "train", caption, (tags,))


def test_mirrorable_leaves_out_flags_symbols_sides_and_clocks() -> None:
    assert mirrorable(picture("red apple", tags=("fruit", "apple")))
    assert not mirrorable(picture("flag: France", "flags"))
    assert not mirrorable(picture("SOS button", "symbols"))
    assert not mirrorable(picture("backhand index pointing left", "people-body"))
    assert not mirrorable(picture("one o’clock", "travel-places"))
    assert not mirrorable(picture("hand", "people-body", tags=("right",)))
    assert not mirrorable(Picture(Path("x.png"), ("x", "向右箭头"), "tiny", "objects", "train"))


def test_flip_adds_each_mirrorable_picture_mirrored_with_its_captions(tiny: ImageModel) -> None:
    tokenizer = tiny.tokenizer
    pixels = np.full((2, 8, 8, 3), 255, dtype=np.uint8)
    pixels[:, 2:6, 0:3] = (255, 0, 0)  # a red block on the left: not left-right symmetric
    pictures = [picture("a red circle"), picture("a red circle pointing left")]
    plain = encode_records(tokenizer, pictures, pixels)
    first = encode_records(tokenizer, pictures[:1], pixels[:1])
    flipped = encode_records(tokenizer, pictures, pixels, flip=True)
    # the first one again, mirrored; the second says a side: not flipped
    assert len(flipped) == len(plain) + len(first)
    assert (flipped[: len(plain)] == plain).all()
    mirrored = flipped[len(plain) :]
    start = tokenizer.caption_length + 1
    assert (mirrored[:, :start] == first[:, :start]).all()  # the same captions
    grid = tokenizer.grid
    for drawn, flip in zip(first[:, start:], mirrored[:, start:], strict=True):
        # 1x1 patches: the mirrored picture's tokens are the grid's columns reversed
        original, reversed_columns = drawn.reshape(grid, grid), flip.reshape(grid, grid)
        assert (reversed_columns == original[:, ::-1]).all()
        assert (reversed_columns != original).any()


def test_shift_adds_every_picture_again_moved_on_white_with_its_captions(
    tiny: ImageModel,
) -> None:
    tokenizer = tiny.tokenizer
    pixels = np.full((2, 8, 8, 3), 255, dtype=np.uint8)
    pixels[:, 2:6, 0:3] = (255, 0, 0)  # a red block on the left
    pictures = [picture("a red circle"), picture("a red circle pointing left")]
    flipped = encode_records(tokenizer, pictures, pixels, flip=True)
    moved = encode_records(tokenizer, pictures, pixels, flip=True, shift=2)
    # every record again (the mirrored ones too), after the unshifted ones
    assert len(moved) == 2 * len(flipped)
    assert (moved[: len(flipped)] == flipped).all()
    start = tokenizer.caption_length + 1
    assert (moved[len(flipped) :, :start] == flipped[:, :start]).all()  # the same captions
    grid, white = tokenizer.grid, tokenizer.encode_pixels(pixels[:1, :1, :1])[0, 0]
    first = len(encode_records(tokenizer, pictures[:1], pixels[:1]))
    dy, dx = shift_offset(pictures[0], 2)
    assert (dy, dx) != (0, 0) and max(abs(dy), abs(dx)) <= 2
    original = flipped[0, start:].reshape(grid, grid)
    for record in moved[len(flipped) : len(flipped) + first]:
        # 1x1 patches: the grid itself moves by (dy, dx), white comes in at the edges
        expected = np.full_like(original, white)
        expected[max(dy, 0) : grid + min(dy, 0), max(dx, 0) : grid + min(dx, 0)] = original[
            max(-dy, 0) : grid + min(-dy, 0), max(-dx, 0) : grid + min(-dx, 0)
        ]
        assert (record[start:].reshape(grid, grid) == expected).all()
    # a mirror image moves by its own offset, fixed by the picture
    assert shift_offset(pictures[0], 2) == (dy, dx)
    offsets = {shift_offset(picture(f"p{i}"), 2, salt) for i in range(40) for salt in ("", "/m")}
    assert len(offsets) > 10 and (0, 0) not in offsets


def test_focused_repeats_the_focus_records_to_their_share_and_keeps_the_rest_once() -> None:
    inside = np.arange(8).reshape(4, 2)  # four records of two tokens
    outside = np.arange(100, 106).reshape(3, 2)
    records = focused(inside, outside, 0.75)
    # 9 inside records for 3 outside ones: every inside record twice, one of them thrice
    assert len(records) == 12
    assert (records[-3:] == outside).all()
    reads = [sum((row == record).all() for row in records[:-3]) for record in inside]
    assert sorted(reads) == [2, 2, 2, 3]
    assert (focused(inside, outside, 0.75) == records).all()  # fixed by the seed
    # a share the focus groups already exceed is refused, not silently ignored
    with pytest.raises(ValueError, match="already 57% of the training records"):
        focused(inside, outside, 0.5)


def test_train_images_focus_repeats_the_focus_groups_records(
    tiny: ImageModel, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = circles_folder(tmp_path / "pictures")
    focus = ["--focus", "food-drink", "--focus-share", "0.75"]
    manifest, captions = continued_records(
        tmp_path_factory, tiny, folder, tmp_path / "run", focus, batch_size=2, steps=2
    )
    # the red circle (food-drink) three times as often as the blue one (flags)
    assert sum(c.endswith("a red circle") for c in captions) == 3
    assert sum(c.endswith("a blue circle") for c in captions) == 1
    assert manifest["splits"]["val"]["documents"] == 1  # validation: every group once


def circles_folder(folder: Path) -> Path:
    """A picture folder of an off-centre red circle (food-drink) and blue one (flags)."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for i, (colour, group) in enumerate([("red", "food-drink"), ("blue", "flags")]):
        image = Image.new("RGB", (32, 32), "white")
        ImageDraw.Draw(image).ellipse((0, 4, 20, 28), fill=colour)  # off-centre: not symmetric
        image.save(folder / f"images/{i}.png")
        rows.append(
            {"id": str(i), "path": f"images/{i}.png", "caption_en": f"a {colour} circle",
             "style": "tiny", "group": group, "split": "train"}
        )  # fmt: skip
    (folder / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_train_images_flip_continues_from_a_model_with_its_tokenizer(
    tiny: ImageModel, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = circles_folder(tmp_path / "pictures")
    manifest, captions = continued_records(
        tmp_path_factory, tiny, folder, tmp_path / "run", "--flip", batch_size=2, steps=2
    )
    # the red circle twice (as drawn and mirrored), the flag once
    assert sum(c.endswith("a red circle") for c in captions) == 2
    assert sum(c.endswith("a blue circle") for c in captions) == 1
    assert manifest["splits"]["val"]["documents"] == 1  # validation stays unflipped


def test_train_images_sets_the_tokenizer_shape_from_the_command_line(
    tiny: ImageModel, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """`--resolution`, `--patch` and `--codebook` give a new run its tokenizer: here 16x16
    pictures in 4x4 patches, 16 image tokens of an 8-entry codebook (the tiny model's are 8x8
    pictures in 64 1x1 patches of 16 colours), and the trained model draws them."""
    from typer.testing import CliRunner

    from musegpt.cli.app import app
    from musegpt.images import load_image_model

    folder = tmp_path_factory.getbasetemp() / "tiny-image-model" / "pictures"
    settings = tiny_settings(batch_size=4, steps=2, layers=1, width=16)
    shape = ["--resolution", "16", "--patch", "4", "--codebook", "8"]
    out = tmp_path / "run"
    command = ["train-images", str(folder), "--out", str(out), *shape, *settings]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    model = load_image_model(out / "best" / "model.safetensors")
    tokenizer = model.tokenizer
    assert (tokenizer.resolution, tokenizer.patch, tokenizer.grid) == (16, 4, 4)
    assert tokenizer.image_length == 16 != tiny.tokenizer.image_length
    assert len(tokenizer.codebook) == 8
    (drawn,) = model.draw("a red circle", size=32, seed=0)
    assert drawn.size == (32, 32)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--resolution", "30", "--patch", "4"], "patch must divide the resolution 30"),
        (["--resolution", "1000"], "resolution must be between"),
        (["--codebook", "1"], "codebook must be between"),
        (["--shift", "16"], "shift must be between 0 and 15 pixels"),
        (["--focus", "pets"], "focus group pets has no training pictures; the groups: a blue"),
        (["--focus-share", "1"], "focus share must be above 0 and below 1 (got 1.0)"),
        (["--resolution", "16", "--from", "BASE"], "keeps the one it started with"),
    ],
)
def test_train_images_refuses_a_bad_tokenizer_shape(
    tiny: ImageModel, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
    args: list[str], says: str,
) -> None:  # fmt: skip
    from typer.testing import CliRunner

    from musegpt.cli.app import app

    base = tmp_path_factory.getbasetemp() / "tiny-image-model"
    args = [str(base / "run" / "best") if a == "BASE" else a for a in args]
    command = ["train-images", str(base / "pictures"), "--out", str(tmp_path / "run"), *args]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2
    assert says in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()  # refused before anything was written
