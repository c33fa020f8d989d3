"""The image core: tokenizer round trips, drawing with a tiny trained model, the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from images_helpers import circles, tiny_image_model
from PIL import Image
from typer.testing import CliRunner

from musegpt.images import ImageModel, ImageModelError, ImageRequestError, load_image_model
from musegpt.images.model import layout_rows
from musegpt.images.sheet import contact_sheet
from musegpt.images.tokenizer import ImageTokenizer, fit_codebook, to_rgb_array
from musegpt.images.train import set_drawing_defaults
from musegpt.model.io import load_model
from musegpt.tokenizer.base import tokenizer_from_json
from musegpt.tokenizer.bpe import BPETokenizer
from musegpt.train.batches import BatchSampler


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ImageModel:
    return tiny_image_model(tmp_path_factory)


def stripes() -> np.ndarray:
    """Four 8x8 pictures of two flat colours each (six colours in all)."""
    colours = [(255, 0, 0), (0, 0, 255), (0, 128, 0), (255, 255, 255), (0, 0, 0), (255, 165, 0)]
    pixels = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    for i in range(4):
        pixels[i, :4] = colours[i]
        pixels[i, 4:] = colours[i + 2]
    return pixels


def small_tokenizer(patch: int = 1, size: int = 8) -> ImageTokenizer:
    text = BPETokenizer.train(["a red circle", "一个红色的圆"], vocab_size=300)
    return ImageTokenizer(
        text, fit_codebook(stripes(), patch, size), resolution=8, patch=patch, caption_length=24,
        styles=["flat"],
    )  # fmt: skip


def test_palette_round_trip_is_exact_when_the_palette_holds_every_colour() -> None:
    tokenizer = small_tokenizer()
    pixels = stripes()
    ids = tokenizer.encode_pixels(pixels)
    assert ids.shape == (4, 64)
    assert ids.min() >= tokenizer.first_code and ids.max() < tokenizer.vocab_size
    assert np.array_equal(tokenizer.decode_pixels(ids), pixels)
    picture = Image.fromarray(pixels[1])
    assert np.array_equal(
        np.asarray(tokenizer.decode_image(tokenizer.encode_image(picture))), pixels[1]
    )


def test_patch_codebook_round_trip_and_serialisation() -> None:
    tokenizer = small_tokenizer(patch=4, size=6)
    assert tokenizer.image_length == 4 and tokenizer.grid == 2
    ids = tokenizer.encode_pixels(stripes())
    assert np.array_equal(tokenizer.decode_pixels(ids), stripes())  # 6 distinct patches, 6 codes
    again = tokenizer_from_json(tokenizer.to_json())
    assert isinstance(again, ImageTokenizer)
    assert again.to_dict() == tokenizer.to_dict()
    assert np.array_equal(again.encode_pixels(stripes()), ids)


def test_prompt_ids_have_a_fixed_length_and_end_with_the_image_marker() -> None:
    tokenizer = small_tokenizer()
    for caption in ("a red circle", "一个红色的圆", "a very long caption " * 5, ""):
        ids = tokenizer.prompt_ids(caption, "flat")
        assert len(ids) == tokenizer.prompt_length and ids[-1] == tokenizer.image_id
    assert tokenizer.prompt_ids("") == [tokenizer.pad_id] * 24 + [tokenizer.image_id]
    assert tokenizer.decode(tokenizer.prompt_ids("a red circle", "flat")) == "flat: a red circle"


def test_transparent_pictures_are_composited_on_white() -> None:
    clear = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    assert (to_rgb_array(clear, 8) == 255).all()


def test_window_stride_starts_every_window_on_a_record() -> None:
    tokens = np.arange(10 * 7, dtype=np.uint16)  # ten records of 7 tokens
    sampler = BatchSampler(tokens, block_size=6, batch_size=64, seed=0, stride=7)
    x, y = sampler.next()
    assert (x[:, 0] % 7 == 0).all()
    assert np.array_equal(y[:, :-1].numpy(), x[:, 1:].numpy())


def mean_colour(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
    coloured = pixels[pixels.min(axis=1) < 200]  # not the white background
    return coloured.mean(axis=0)


def test_drawing_follows_the_caption(tiny: ImageModel) -> None:
    red = tiny.draw("a red circle", n=2, size=64, seed=1, temperature=0)
    blue = tiny.draw("a blue circle", n=2, size=64, seed=1, temperature=0)
    for image in red:
        r, g, b = mean_colour(image)
        assert r > 150 and b < 100, (r, g, b)
    for image in blue:
        r, g, b = mean_colour(image)
        assert b > 150 and r < 100, (r, g, b)


def test_draw_returns_n_rgb_pictures_of_the_size_and_is_seeded(tiny: ImageModel) -> None:
    steps: list[tuple[int, int]] = []
    first = tiny.draw(
        "a green circle", n=3, size="256x256", seed=7, progress=lambda d, t: steps.append((d, t))
    )
    assert [(im.mode, im.size) for im in first] == [("RGB", (256, 256))] * 3
    assert steps[-1] == (64, 64) and len(steps) == 64
    again = tiny.draw("a green circle", n=3, size=256, seed=7)
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again, strict=True)
    )
    assert first[0].info["seed"] == "7" and first[0].info["prompt"] == "a green circle"
    guided = tiny.draw("a green circle", n=2, size=32, seed=7, guidance=3.0, top_k=4)
    assert len(guided) == 2


def test_half_precision_storage_halves_the_weights_and_still_draws(
    tiny: ImageModel, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import torch
    from safetensors.torch import load_file

    from musegpt.images.train import store_half_precision
    from musegpt.model.io import read_metadata

    source = tmp_path_factory.getbasetemp() / "tiny-image-model" / "run" / "best"
    half = tmp_path / "half.safetensors"
    shutil.copy(source / "model.safetensors", half)
    set_drawing_defaults(half, 2.0, 0.5, 4)
    store_half_precision(half)
    assert {t.dtype for t in load_file(str(half)).values()} == {torch.float16}
    # the drawing defaults (all the file's metadata) are kept
    assert read_metadata(half)["image_guidance"] == "2"
    assert half.stat().st_size < 0.6 * (source / "model.safetensors").stat().st_size
    model = load_image_model(half)
    assert (model.guidance, model.temperature, model.top_k) == (2.0, 0.5, 4)
    for kept, full in zip(model.gpt.parameters(), tiny.gpt.parameters(), strict=True):
        assert kept.dtype == torch.float32  # loaded back to float32, rounded to float16
        assert torch.equal(kept, full.half().float())
    (red,) = model.draw("a red circle", size=32, seed=1, temperature=0)
    r, g, b = mean_colour(red)
    assert r > 150 and b < 100, (r, g, b)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"prompt": " "}, "prompt"),
        ({"n": 0}, "n"),
        ({"n": 11}, "n"),
        ({"size": "300x200"}, "size"),
        ({"size": 4096}, "size"),
        ({"style": "watercolour"}, "style"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": -2}, "top_k"),
    ],
)
def test_bad_requests_are_clear_errors(tiny: ImageModel, kwargs: dict, named: str) -> None:
    request = {"prompt": "a red circle", **kwargs}
    with pytest.raises(ImageRequestError, match=named):
        tiny.draw(**request)


def test_a_text_model_is_not_an_image_model() -> None:
    with pytest.raises(ImageModelError, match="not an image model"):
        load_image_model("poetry")
    with pytest.raises(ImageModelError, match="no-such-model"):
        load_image_model("no-such-model")


def test_the_model_file_holds_the_image_tokenizer(tiny: ImageModel, tmp_path_factory) -> None:
    folder = tmp_path_factory.getbasetemp() / "tiny-image-model" / "run" / "best"
    _, tokenizer = load_model(folder)
    assert isinstance(tokenizer, ImageTokenizer) and tokenizer.styles == ["tiny"]
    assert tiny.name == "run"


def test_contact_sheet_lays_pictures_out_in_a_grid() -> None:
    sheet = contact_sheet([Image.new("RGB", (10, 10), "red")] * 4)
    assert sheet.size == (2 * 18 + 8, 2 * 18 + 8)


def test_cli_draws_a_contact_sheet_and_reports_bad_sizes(
    tiny: ImageModel, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from musegpt.cli.app import app

    model = str(tmp_path_factory.getbasetemp() / "tiny-image-model" / "run" / "best")
    out = tmp_path / "circles.png"
    args = ["draw", "a red circle", "-n", "4", "--size", "256x256", "--seed", "1"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--model", model])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (2 * 264 + 8, 2 * 264 + 8)
    result = CliRunner().invoke(app, [*args, "--separate", "--out", str(out), "--model", model])
    assert result.exit_code == 0 and Image.open(tmp_path / "circles-4.png").size == (256, 256)
    bad = CliRunner().invoke(app, ["draw", "x", "--size", "4x4", "--model", model])
    assert bad.exit_code == 2 and "size" in bad.output and "Traceback" not in bad.output


def test_circles_helper_matches_the_tiny_model(tiny: ImageModel) -> None:
    assert {caption.split()[1] for caption, _ in circles()} <= {"red", "blue", "green", "orange"}


def test_studio_draws_with_an_image_model(tiny: ImageModel, tmp_path_factory) -> None:
    from musegpt.engines.registry import open_engine
    from musegpt.studio import Studio

    model = str(tmp_path_factory.getbasetemp() / "tiny-image-model" / "run" / "best")
    pictures = Studio(open_engine("poetry")).draw("a red circle", model=model, n=2, size=32)
    assert [p.size for p in pictures] == [(32, 32), (32, 32)]


def test_text_commands_refuse_an_image_model(tiny: ImageModel, tmp_path_factory) -> None:
    from musegpt.engines.base import EngineError
    from musegpt.engines.registry import open_engine

    model = tmp_path_factory.getbasetemp() / "tiny-image-model" / "run" / "best"
    with pytest.raises(EngineError, match="image model"):
        open_engine(str(model))


def first_rows_and_rest(model: ImageModel, rows: int) -> tuple[set[tuple[int, ...]], int]:
    """The distinct first `rows` rows of six pictures of one caption, and how many distinct
    rests (drawn at temperature 50: nearly uniform over the codebook)."""
    style = model.styles[0] if model.styles else None
    pictures = model.draw("a red circle", n=6, size=8, seed=3, style=style, temperature=50)
    grids = [model.tokenizer.encode_image(p) for p in pictures]
    cut = rows * model.tokenizer.grid
    return {tuple(g[:cut]) for g in grids}, len({tuple(g[cut:]) for g in grids})


def test_the_layout_rows_are_drawn_at_the_models_cooler_temperature(
    tiny: ImageModel, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    trained = tmp_path_factory.getbasetemp() / "tiny-image-model" / "run" / "best"
    cool = tmp_path / "cool.safetensors"
    shutil.copy(trained / "model.safetensors", cool)
    set_drawing_defaults(cool, guidance=1.0, layout_temperature_ratio=1e-4)
    model = load_image_model(cool)
    assert model.layout_temperature_ratio == 1e-4
    rows = layout_rows(model.tokenizer.grid)
    assert rows == 2  # the top quarter of the tiny model's 8 rows (4 of a 64x64 model's 16)
    assert layout_rows(16) == 4
    layouts, rests = first_rows_and_rest(model, rows)
    assert len(layouts) == 1 and rests > 1  # the layout rows near-greedy, the rest not
    plain_layouts, _ = first_rows_and_rest(tiny, rows)
    assert tiny.layout_temperature_ratio == 1.0 and len(plain_layouts) > 1
    with pytest.raises(ValueError, match="layout_temperature_ratio"):
        set_drawing_defaults(cool, layout_temperature_ratio=0)
