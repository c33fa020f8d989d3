"""Picture corpora: the built-in `icons` (real npm sets, drawn with resvg) and a user's own
folder with a captions file, through the command line."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from musegpt.cli.app import app
from musegpt.data.npm import npm_cache_name
from musegpt.images.corpus import (
    EMOJIBASE,
    ICON_SETS,
    SPLITS,
    ImageCorpusError,
    corpus_manifest,
    emoji_key,
    load_image_corpus,
    prepare_icons,
    split_of,
)
from musegpt.paths import cache_dir

GROUPS = {
    "smileys-emotion",
    "people-body",
    "animals-nature",
    "food-drink",
    "travel-places",
    "activities",
    "objects",
    "symbols",
    "flags",
}


def test_one_spelling_for_an_emoji_whatever_the_source() -> None:
    assert emoji_key("0031-FE0F-20E3") == emoji_key("31-20e3") == "31-20e3"
    assert emoji_key("1F468-200D-2695-FE0F") == emoji_key("1f468-200d-2695") == "1f468-200d-2695"


def test_split_is_stable_and_near_its_shares() -> None:
    keys = [f"{n:x}" for n in range(0x1F300, 0x1F300 + 2000)]
    splits = Counter(split_of(key) for key in keys)
    assert [split_of(key) for key in keys[:50]] == [split_of(key) for key in keys[:50]]
    assert set(splits) == set(SPLITS)
    assert 0.86 < splits["train"] / len(keys) < 0.94
    assert 0.03 < splits["test"] / len(keys) < 0.07


def _icons_available() -> bool:
    names = [npm_cache_name(s.package, s.version) for s in ICON_SETS]
    cached = all((cache_dir() / n).is_dir() for n in [*names, npm_cache_name(*EMOJIBASE)])
    return cached or shutil.which("npm") is not None


@pytest.fixture(scope="module")
def icons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _icons_available():
        pytest.skip("the icons corpus needs npm (or cached copies of its packages)")
    out = tmp_path_factory.mktemp("icons") / "icons"
    prepare_icons(out, size=32, limit=40)  # the first 40 emoji (smileys) of every set
    return out


def test_icons_draw_every_set_with_captions_in_both_languages(icons: Path) -> None:
    rows = load_image_corpus(icons)
    assert {row.set for row in rows} == {s.name for s in ICON_SETS}
    assert {row.style for row in rows} == {"outline", "line", "color", "flat"}
    grinning = [row for row in rows if row.caption_en == "grinning face"]
    assert len(grinning) == len(ICON_SETS)
    assert {row.caption_zh for row in grinning} == {"嘿嘿"}  # CLDR's Chinese name
    assert all(row.caption_en and row.caption_zh and row.group in GROUPS for row in rows)
    assert all("skin tone" not in row.caption_en for row in rows)
    picture = grinning[0].image(icons)
    assert picture.mode == "RGB" and picture.size == (32, 32)
    assert picture.getpixel((0, 0)) == (255, 255, 255)  # transparent corners become white
    assert len(picture.getcolors(maxcolors=4096) or []) > 10  # a drawing, not blank
    # An emoji is in one split in every set, so a held-out emoji is never seen in any style.
    by_emoji: dict[str, set[str]] = {}
    for row in rows:
        by_emoji.setdefault(row.emoji, set()).add(row.split)
    assert all(len(splits) == 1 for splits in by_emoji.values())


def test_icons_manifest_names_every_licence_and_share_alike(icons: Path) -> None:
    manifest = corpus_manifest(icons)
    sets = {entry["name"]: entry for entry in manifest["sets"]}
    assert sets["openmoji"]["licence"] == "CC BY-SA 4.0" and sets["openmoji"]["share_alike"]
    assert sets["twemoji"]["spdx"] == "CC-BY-4.0" and not sets["twemoji"]["share_alike"]
    assert sets["noto"]["spdx"] == "Apache-2.0" and "Google" in sets["noto"]["attribution"]
    assert manifest["captions"]["licence"] == "MIT"
    counts = manifest["counts"]
    assert counts["images"] == sum(entry["images"] for entry in manifest["sets"])
    assert counts["images"] == sum(counts[split] for split in SPLITS)


def test_icons_again_is_up_to_date(icons: Path) -> None:
    assert prepare_icons(icons, size=32, limit=40).up_to_date


def test_prepare_icons_from_the_command_line(tmp_path: Path) -> None:
    if not _icons_available():
        pytest.skip("the icons corpus needs npm (or cached copies of its packages)")
    args = ["prepare", "icons", "--out", str(tmp_path / "icons"), "--limit", "3"]
    result = CliRunner().invoke(app, [*args, "--image-size", "16"])
    assert result.exit_code == 0, result.output
    assert "openmoji (outline, CC BY-SA 4.0)" in result.output
    assert "share pictures derived from them under the same licence" in result.output
    assert len(load_image_corpus(tmp_path / "icons")) == 3 * len(ICON_SETS)


def test_icons_without_npm_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSEGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on it
    with pytest.raises(FileNotFoundError, match="need npm, which is missing"):
        prepare_icons(tmp_path / "out", limit=1)


# ---------------------------------------------------------------- a user's own pictures


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    folder = tmp_path / "my-pictures"
    folder.mkdir()
    Image.new("RGB", (40, 20), "red").save(folder / "red.png")
    Image.new("RGB", (40, 20), "red").save(folder / "same-red.png")
    Image.new("RGBA", (30, 30), (0, 0, 255, 0)).save(folder / "clear.png")
    Image.new("RGBA", (30, 30), (0, 0, 255, 255)).save(folder / "blue.webp")
    Image.new("RGB", (8, 8), "green").save(folder / "green.jpg")  # not captioned
    (folder / "sun.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
        '<circle cx="5" cy="5" r="4" fill="#ffa500"/></svg>'
    )
    return folder


def _captions(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def test_prepare_a_folder_with_captions(pictures: Path, tmp_path: Path) -> None:
    captions = _captions(
        tmp_path / "captions.jsonl",
        [
            {"file": "red.png", "caption": "a long red banner at dusk", "group": "shapes"},
            {"file": "same-red.png", "caption": "red banner"},  # same picture: kept once
            {"file": "blue.webp", "caption": "blue", "caption_zh": "蓝色", "style": "flat"},
            {"file": "sun.svg", "caption": "an orange sun"},
            {"file": "clear.png", "caption": "nothing"},  # fully transparent: blank
        ],
    )
    out = tmp_path / "corpus"
    args = ["prepare", str(pictures), "--captions", str(captions), "--out", str(out)]
    args += ["--image-size", "16"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "left out: pictures not in --captions" in result.output
    rows = {row.caption_en: row for row in load_image_corpus(out)}
    assert set(rows) == {"red banner", "blue", "an orange sun"}
    assert rows["blue"].caption_zh == "蓝色" and rows["blue"].style == "flat"
    assert rows["red banner"].style == rows["red banner"].set == "my-pictures"
    sun = rows["an orange sun"].image(out)
    assert sun.size == (16, 16) and sun.getpixel((8, 8)) == (255, 165, 0)
    assert sun.getpixel((0, 0)) == (255, 255, 255)
    red = rows["red banner"].image(out)  # 40x20 padded to a square with white
    assert red.getpixel((8, 0)) == (255, 255, 255) and red.getpixel((8, 8)) == (255, 0, 0)
    counts = corpus_manifest(out)["counts"]
    assert counts["duplicates_removed"] == 1 and counts["blank_removed"] == 1
    assert counts["uncaptioned_skipped"] == 1
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "up to date" in again.output


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"file": "missing.png", "caption": "x"}', "line 1: missing.png is not in"),
        ('{"file": "red.png"}', 'line 1: red.png has no "caption"'),
        ('{"file": "red.png", "caption": 3}', "line 1: 'caption' must be a string"),
        ("not json", "line 1 is not JSON"),
        ('{"caption": "x"}', 'give the picture\'s file name as "file"'),
    ],
)
def test_bad_captions_are_one_clear_error(
    pictures: Path, tmp_path: Path, line: str, message: str
) -> None:
    captions = tmp_path / "captions.jsonl"
    captions.write_text(line + "\n")
    args = ["prepare", str(pictures), "--captions", str(captions), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_a_picture_pil_cannot_read_is_named(pictures: Path, tmp_path: Path) -> None:
    (pictures / "broken.png").write_bytes(b"not a png")
    captions = _captions(tmp_path / "c.jsonl", [{"file": "broken.png", "caption": "x"}])
    args = ["prepare", str(pictures), "--captions", str(captions), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "broken.png is not a picture PIL can read" in result.output


def test_out_must_not_be_another_folder(pictures: Path, tmp_path: Path) -> None:
    captions = _captions(tmp_path / "c.jsonl", [{"file": "red.png", "caption": "red"}])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    args = ["prepare", str(pictures), "--captions", str(captions), "--out", str(tmp_path / "notes")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "is not a prepared picture corpus" in result.output
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_reading_a_folder_that_is_no_corpus(tmp_path: Path) -> None:
    with pytest.raises(ImageCorpusError, match="musegpt prepare icons"):
        load_image_corpus(tmp_path)


def test_musegpt_models_credits_the_icons_sets() -> None:
    from musegpt.engines.registry import list_models

    if "icons" not in {entry.name for entry in list_models()}:
        pytest.skip("the packaged image model icons is not installed")
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "openmoji (CC BY-SA 4.0)" in result.output and "twemoji (CC BY 4.0)" in result.output
