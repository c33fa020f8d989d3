"""Captioned picture corpora: the built-in `icons` (emoji from five npm sets, captioned in
English and Chinese) and a user's own folder of pictures with a captions file.

A prepared corpus is a folder:

    manifest.json   sets (package, version, style, licence, attribution), counts, split
    images.jsonl    one row per picture: id, path, caption_en, caption_zh, style, set,
                    group, split (+ subgroup, emoji, tags_en, tags_zh where known)
    images/         the pictures, PNG, RGB, size x size, composited on white

`icons` renders the sets' SVGs with resvg (PyPI `resvg-py`, no system libraries); every
emoji is captioned from `emojibase-data` (Unicode CLDR names and keywords in English and
Chinese) and takes its group from there too (animals-nature, food-drink, flags...). Skin-tone
variants and components are left out, identical renders are kept once, and the split is by
emoji (a hash of its code points), so an emoji held out for evaluation is held out in every
style. Running it again with the same settings does nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from musegpt.data.npm import fetch_npm_package
from musegpt.paths import cache_dir, cache_lock

FORMAT = "musegpt-image-corpus"
FORMAT_VERSION = 1
ICONS_RECIPE = 2  # bumped when `icons` is drawn or chosen differently: old corpora are redone
MANIFEST = "manifest.json"
ROWS = "images.jsonl"
PICTURES = "images"
DEFAULT_SIZE = 64
MIN_SIZE, MAX_SIZE = 8, 1024
SPLITS = ("train", "val", "test")
# Per hundred emoji: 90 train, 5 validation, 5 test (held out for evaluation).
SPLIT_PERCENT = (90, 5, 5)
SPLIT_SALT = "musegpt-icons-split-1"  # changing it reshuffles every split
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".svg")
WHITE = (255, 255, 255)

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class IconSet:
    """One npm emoji set: where it comes from, how it looks, whose it is."""

    name: str
    package: str
    version: str
    style: str  # what a caption asks for to get this look
    licence: str
    spdx: str
    licence_url: str
    attribution: str
    share_alike: bool = False  # CC BY-SA: derived pictures carry the same licence

    def manifest_entry(self, images: int) -> dict[str, Any]:
        return {**asdict(self), "images": images}


OPENMOJI_ATTRIBUTION = (
    "OpenMoji, the open-source emoji and icon project (https://openmoji.org), "
    "HfG Schwäbisch Gmünd; licence CC BY-SA 4.0"
)
ICON_SETS: tuple[IconSet, ...] = (
    IconSet(
        "openmoji",
        "openmoji",
        "17.0.0",
        "outline",
        "CC BY-SA 4.0",
        "CC-BY-SA-4.0",
        "https://creativecommons.org/licenses/by-sa/4.0/",
        OPENMOJI_ATTRIBUTION,
        share_alike=True,
    ),
    IconSet(
        "openmoji-black",
        "openmoji",
        "17.0.0",
        "line",
        "CC BY-SA 4.0",
        "CC-BY-SA-4.0",
        "https://creativecommons.org/licenses/by-sa/4.0/",
        OPENMOJI_ATTRIBUTION + " (its black line-art version)",
        share_alike=True,
    ),
    IconSet(
        "noto",
        "@iconify-json/noto",
        "1.2.9",
        "color",
        "Apache 2.0",
        "Apache-2.0",
        "https://github.com/googlefonts/noto-emoji/blob/main/svg/LICENSE",
        "Noto Emoji by Google Inc (https://github.com/googlefonts/noto-emoji), via Iconify",
    ),
    IconSet(
        "twemoji",
        "@iconify-json/twemoji",
        "1.2.5",
        "flat",
        "CC BY 4.0",
        "CC-BY-4.0",
        "https://creativecommons.org/licenses/by/4.0/",
        "Twemoji by Twitter, Inc and other contributors (https://github.com/jdecked/twemoji), "
        "via Iconify; licence CC BY 4.0",
    ),
    IconSet(
        "fluent-emoji-flat",
        "@iconify-json/fluent-emoji-flat",
        "1.2.6",
        "flat",
        "MIT",
        "MIT",
        "https://github.com/microsoft/fluentui-emoji/blob/main/LICENSE",
        "Fluent Emoji (flat) by Microsoft Corporation "
        "(https://github.com/microsoft/fluentui-emoji), via Iconify",
    ),
)
EMOJIBASE = ("emojibase-data", "17.0.0")
CAPTIONS_SOURCE = {
    "package": EMOJIBASE[0],
    "version": EMOJIBASE[1],
    "licence": "MIT",
    "attribution": "Emojibase by Miles Johnson (https://emojibase.dev): Unicode CLDR "
    "names and keywords in English and Chinese",
}
COMPONENT_GROUP = "component"  # skin tones and hair styles alone: not pictures of anything
FLAGS_GROUP = "flags"
# Flags in black outline are a few rectangles of stripes, the same for dozens of countries.
NO_FLAGS = frozenset({"openmoji-black"})


def icons_credits() -> str:
    """One line crediting what the `icons` corpus (and a model trained on it) is made of."""
    sets = ", ".join(f"{s.name} ({s.licence})" for s in ICON_SETS)
    return (
        f"icons corpus: {sets}; captions {CAPTIONS_SOURCE['package']} "
        f"({CAPTIONS_SOURCE['licence']}). OpenMoji is CC BY-SA 4.0 (share-alike): "
        "see docs/images-corpus.md"
    )


class ImageCorpusError(ValueError):
    """A picture corpus cannot be prepared or read; the message says what and what to do."""


@dataclass(frozen=True)
class ImageRow:
    """One captioned picture of a prepared corpus (a line of images.jsonl)."""

    id: str
    path: str  # relative to the corpus folder
    caption_en: str
    caption_zh: str
    style: str
    set: str
    group: str  # "" when unknown (a user's pictures without one)
    split: str
    subgroup: str = ""
    emoji: str = ""
    tags_en: list[str] = field(default_factory=list)
    tags_zh: list[str] = field(default_factory=list)

    def image(self, folder: Path) -> Image.Image:
        with Image.open(folder / self.path) as picture:
            return picture.convert("RGB")


@dataclass
class ImageCorpusReport:
    out: Path
    manifest: dict[str, Any]
    up_to_date: bool = False


@dataclass(frozen=True)
class Emoji:
    """An emoji as emojibase describes it, in both languages."""

    key: str  # code points in lower-case hex without FE0F, joined by "-"
    emoji: str
    label_en: str
    label_zh: str
    group: str
    subgroup: str
    tags_en: list[str]
    tags_zh: list[str]


def emoji_key(hexcode: str) -> str:
    """One spelling for a code-point sequence whatever the source: `0031-FE0F-20E3` and
    `31-20e3` are both `31-20e3` (variation selector 16 only asks for colour)."""
    points = (int(part, 16) for part in hexcode.replace("_", "-").split("-") if part)
    return "-".join(f"{point:x}" for point in points if point != 0xFE0F)


def split_of(key: str) -> str:
    """train, val or test, from a hash of the emoji (or file) so it never changes."""
    bucket = int(hashlib.sha256(f"{SPLIT_SALT}:{key}".encode()).hexdigest(), 16) % 100
    bound = 0
    for name, percent in zip(SPLITS, SPLIT_PERCENT, strict=True):
        bound += percent
        if bucket < bound:
            return name
    return SPLITS[-1]


# ---------------------------------------------------------------- sources


def _fetch(package: str, version: str, wanted: Callable[[str], bool]) -> Path:
    return fetch_npm_package(package, version, wanted, "the icons picture corpus")


def load_emoji() -> list[Emoji]:
    """Every fully-qualified emoji emojibase knows (skin tones and components left out), in
    Unicode's order, with its English and Chinese CLDR names and keywords."""
    wanted = {"en/data.json", "zh/data.json", "meta/groups.json"}
    root = _fetch(*EMOJIBASE, lambda name: name in wanted)
    english = json.loads((root / "en/data.json").read_text(encoding="utf-8"))
    chinese = {
        entry["hexcode"]: entry
        for entry in json.loads((root / "zh/data.json").read_text(encoding="utf-8"))
    }
    meta = json.loads((root / "meta/groups.json").read_text(encoding="utf-8"))
    groups, subgroups = meta["groups"], meta["subgroups"]
    found: list[Emoji] = []
    for entry in english:
        if "group" not in entry or groups[str(entry["group"])] == COMPONENT_GROUP:
            continue  # regional indicator letters have no group
        zh = chinese.get(entry["hexcode"], {})
        found.append(
            Emoji(
                key=emoji_key(entry["hexcode"]),
                emoji=entry["emoji"],
                label_en=entry["label"],
                label_zh=zh.get("label", ""),
                group=groups[str(entry["group"])],
                subgroup=subgroups.get(str(entry.get("subgroup")), ""),
                tags_en=list(entry.get("tags", [])),
                tags_zh=list(zh.get("tags", [])),
            )
        )
    return found


def _openmoji_svgs(icon_set: IconSet) -> dict[str, str]:
    """Emoji key -> SVG text of OpenMoji's colour or black-and-white drawings."""
    folder = "black/svg/" if icon_set.name.endswith("-black") else "color/svg/"
    root = _fetch(
        icon_set.package,
        icon_set.version,
        lambda name: name.startswith(("color/svg/", "black/svg/")) and name.endswith(".svg"),
    )
    return {
        emoji_key(svg.stem): svg.read_text(encoding="utf-8")
        for svg in sorted((root / folder).glob("*.svg"))
    }


def _iconify_svgs(icon_set: IconSet) -> dict[str, str]:
    """Emoji key -> SVG text of an Iconify JSON set (icons.json bodies; chars.json maps code
    points to icon names). Aliases that flip or rotate an icon are left out."""
    root = _fetch(icon_set.package, icon_set.version, lambda n: n in {"icons.json", "chars.json"})
    data = json.loads((root / "icons.json").read_text(encoding="utf-8"))
    chars: dict[str, str] = json.loads((root / "chars.json").read_text(encoding="utf-8"))
    icons: dict[str, dict[str, Any]] = data["icons"]
    aliases: dict[str, dict[str, Any]] = data.get("aliases", {})
    svgs: dict[str, str] = {}
    for hexcode, name in chars.items():
        alias = aliases.get(name)
        if alias is not None and set(alias) == {"parent"}:
            name = alias["parent"]
        icon = icons.get(name)
        if icon is None:
            continue
        left, top = icon.get("left", data.get("left", 0)), icon.get("top", data.get("top", 0))
        width = icon.get("width", data.get("width", 16))
        height = icon.get("height", data.get("height", 16))
        svgs[emoji_key(hexcode)] = (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{left} {top} {width} {height}">'
            f"{icon['body']}</svg>"
        )
    return svgs


def set_svgs(icon_set: IconSet) -> dict[str, str]:
    if icon_set.package == "openmoji":
        return _openmoji_svgs(icon_set)
    return _iconify_svgs(icon_set)


# ---------------------------------------------------------------- rendering


def render_svg(svg: str, size: int) -> Image.Image:
    """An SVG drawn at size x size on white, as RGB."""
    import resvg_py

    try:
        png = resvg_py.svg_to_bytes(
            svg_string=svg, width=size, height=size, background="#ffffff", skip_system_fonts=True
        )
    except ValueError as err:
        raise ImageCorpusError(f"resvg could not draw an SVG: {err}") from None
    with Image.open(io.BytesIO(bytes(png))) as picture:
        return on_white(picture, size)


def on_white(picture: Image.Image, size: int) -> Image.Image:
    """A picture of any mode made square (centred, padded with white), size x size, RGB;
    transparent parts become white."""
    rgba = picture.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (*WHITE, 255))
    canvas.alpha_composite(rgba)
    rgb = canvas.convert("RGB")
    if rgb.size != (size, size):
        side = max(rgb.size)
        square = Image.new("RGB", (side, side), WHITE)
        square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
        rgb = square.resize((size, size), Image.Resampling.LANCZOS)
    return rgb


def _pixels_digest(picture: Image.Image) -> str:
    return hashlib.sha256(picture.tobytes()).hexdigest()


def _is_blank(picture: Image.Image) -> bool:
    # Every channel's (min, max) is (255, 255): nothing was drawn.
    return all(extrema == (255, 255) for extrema in picture.getextrema())


# ---------------------------------------------------------------- writing


def _check_size(size: int) -> None:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ImageCorpusError(
            f"--image-size must be between {MIN_SIZE} and {MAX_SIZE} pixels, not {size}"
        )


def _earlier_run(out: Path, settings: dict[str, Any]) -> tuple[str, ImageCorpusReport | None]:
    """The digest of `settings` (the split rule and format added, in place), and the report
    of the corpus already in `out` when it was made with the same ones."""
    settings.update(split=[SPLIT_SALT, *SPLIT_PERCENT], format=FORMAT_VERSION)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    try:
        manifest: dict[str, Any] = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return digest, None
    if manifest.get("settings_digest") != digest or not (out / ROWS).is_file():
        return digest, None
    return digest, ImageCorpusReport(out, manifest, up_to_date=True)


@dataclass
class _Writer:
    """Renders go to a temporary folder beside `out`, which replaces `out` only when the
    corpus is complete, so a failed run never leaves half a corpus that looks finished."""

    out: Path
    rows: list[ImageRow] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)  # pixel digest -> index in rows
    duplicates: int = 0
    blank: int = 0

    def __post_init__(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}-"))
        (self.work / PICTURES).mkdir()

    def add(self, row: ImageRow, picture: Image.Image) -> None:
        if _is_blank(picture):
            self.blank += 1
            return
        digest = _pixels_digest(picture)
        index = self.seen.get(digest)
        if index is not None:
            # Two captions, one picture (twemoji draws France and Clipperton Island alike):
            # the shorter caption is kept, as it is the more general name.
            self.duplicates += 1
            kept = self.rows[index]
            if len(row.caption_en) < len(kept.caption_en):
                (self.work / kept.path).unlink()
                picture.save(self.work / row.path, optimize=True)
                self.rows[index] = row
            return
        self.seen[digest] = len(self.rows)
        picture.save(self.work / row.path, optimize=True)
        self.rows.append(row)

    def finish(self, manifest: dict[str, Any]) -> None:
        with (self.work / ROWS).open("w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
        (self.work / MANIFEST).write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        old = self.out.with_name(f".{self.out.name}-old")
        if self.out.exists():
            if not (self.out / MANIFEST).is_file():
                self.abandon()
                raise ImageCorpusError(
                    f"{self.out} exists and is not a prepared picture corpus; choose another --out"
                )
            os.replace(self.out, old)
        os.replace(self.work, self.out)
        if old.exists():
            shutil.rmtree(old)

    def abandon(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def counts(self) -> dict[str, Any]:
        splits = Counter(row.split for row in self.rows)
        return {
            "images": len(self.rows),
            **{split: splits[split] for split in SPLITS},
            "duplicates_removed": self.duplicates,
            "blank_removed": self.blank,
        }


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ImageCorpusError(f"--out {out} is a file; give a folder for the corpus")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ImageCorpusError(
            f"{out} is a folder that is not a prepared picture corpus; choose another --out"
        )


def prepare_icons(
    out: Path,
    size: int = DEFAULT_SIZE,
    sets: Sequence[str] | None = None,
    progress: Progress | None = None,
    limit: int | None = None,
) -> ImageCorpusReport:
    """The built-in `icons` corpus in `out`: every emoji of every set in `sets` (default
    all of `ICON_SETS`; the first `limit` emoji of each) drawn at size x size on white,
    captioned in English and Chinese."""
    _check_size(size)
    _check_out(out)
    chosen = _choose_sets(sets)
    settings = {
        "corpus": "icons",
        "size": size,
        "sets": [f"{s.name}={s.package}@{s.version}" for s in chosen],
        "captions": "@".join(EMOJIBASE),
        "recipe": ICONS_RECIPE,
        "limit": limit,
    }
    digest, done_before = _earlier_run(out, settings)
    if done_before is not None:
        return done_before
    emoji = load_emoji()
    sources = [(icon_set, set_svgs(icon_set)) for icon_set in chosen]
    jobs = [
        (icon_set, item, svgs[item.key])
        for icon_set, svgs in sources
        for item in emoji[:limit]
        if item.key in svgs and not (icon_set.name in NO_FLAGS and item.group == FLAGS_GROUP)
    ]
    writer = _Writer(out)
    try:
        for done, (icon_set, item, svg) in enumerate(jobs, 1):
            row_id = f"{icon_set.name}-{item.key}"
            row = ImageRow(
                id=row_id,
                path=f"{PICTURES}/{row_id}.png",
                caption_en=item.label_en,
                caption_zh=item.label_zh,
                style=icon_set.style,
                set=icon_set.name,
                group=item.group,
                split=split_of(item.key),
                subgroup=item.subgroup,
                emoji=item.emoji,
                tags_en=item.tags_en,
                tags_zh=item.tags_zh,
            )
            writer.add(row, render_svg(svg, size))
            if progress is not None:
                progress(done, len(jobs))
        per_set = Counter(row.set for row in writer.rows)
        manifest = _manifest("icons", size, settings, digest, writer)
        manifest["sets"] = [s.manifest_entry(per_set[s.name]) for s in chosen]
        manifest["captions"] = CAPTIONS_SOURCE
        writer.finish(manifest)
    except BaseException:
        writer.abandon()
        raise
    return ImageCorpusReport(out, manifest)


def _choose_sets(sets: Sequence[str] | None) -> list[IconSet]:
    if sets is None:
        return list(ICON_SETS)
    known = {s.name: s for s in ICON_SETS}
    unknown = [name for name in sets if name not in known]
    if unknown or not sets:
        raise ImageCorpusError(
            f"unknown icon set {unknown[0] if unknown else '(none)'!r}; known: {', '.join(known)}"
        )
    return [known[name] for name in sets]


def _manifest(
    name: str, size: int, settings: dict[str, Any], digest: str, writer: _Writer
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "image_size": size,
        "counts": writer.counts(),
        "groups": dict(sorted(Counter(row.group for row in writer.rows).items())),
        "styles": dict(sorted(Counter(row.style for row in writer.rows).items())),
        "split": {
            "by": "sha256 of the emoji's code points (or the file's name)",
            "percent": dict(zip(SPLITS, SPLIT_PERCENT, strict=True)),
        },
        "settings": settings,
        "settings_digest": digest,
    }


def icons_corpus(size: int = DEFAULT_SIZE) -> Path:
    """The prepared `icons` corpus in the cache ($MUSEGPT_CACHE/images/icons-SIZE),
    prepared on first use."""
    out = cache_dir() / "images" / f"icons-{size}"
    with cache_lock(out):  # one process prepares it; another waits, then finds it prepared
        prepare_icons(out, size)
    return out


# ---------------------------------------------------------------- a user's own pictures


def _read_captions(captions: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        lines = captions.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ImageCorpusError(f"--captions {captions} does not exist") from None
    except UnicodeDecodeError:
        raise ImageCorpusError(f"--captions {captions} is not UTF-8 text") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise ImageCorpusError(f"{captions} line {number} is not JSON") from None
        if not isinstance(entry, dict):
            raise ImageCorpusError(f"{captions} line {number} is not a JSON object")
        yield number, entry


def _text_field(entry: dict[str, Any], names: Sequence[str], where: str) -> str:
    for name in names:
        value = entry.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ImageCorpusError(f"{where}: {name!r} must be a string")
        return value.strip()
    return ""


def _load_picture(path: Path, size: int, where: str) -> Image.Image:
    if path.suffix.lower() == ".svg":
        try:
            return render_svg(path.read_text(encoding="utf-8"), size)
        except (UnicodeDecodeError, ImageCorpusError) as err:
            raise ImageCorpusError(f"{where}: {path.name} cannot be drawn ({err})") from None
    try:
        with Image.open(path) as picture:
            picture.load()
            return on_white(picture, size)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as err:
        raise ImageCorpusError(
            f"{where}: {path.name} is not a picture PIL can read ({err})"
        ) from None


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES]


def prepare_pictures(
    folder: Path,
    captions: Path,
    out: Path,
    size: int = DEFAULT_SIZE,
    progress: Progress | None = None,
) -> ImageCorpusReport:
    """A corpus from a folder of pictures (PNG, JPEG, WebP, GIF, BMP, SVG) and a JSON Lines
    captions file, one object per picture: `{"file": "cat.png", "caption": "a grey cat"}`,
    optionally `caption_zh`, `style` (default: the folder's name) and `group`. Pictures the
    file does not caption are left out and counted."""
    _check_size(size)
    if not folder.is_dir():
        raise ImageCorpusError(f"{folder} is not a folder of pictures")
    _check_out(out)
    entries = list(_read_captions(captions))
    if not entries:
        raise ImageCorpusError(f"--captions {captions} captions no pictures")
    set_name = folder.resolve().name or "pictures"
    listed = {p.name for p in _files(folder)}
    # A picture edited in place (same name, newer file) makes the corpus out of date.
    pictures = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in _files(folder))
    settings = {
        "corpus": str(folder.resolve()),
        "captions": hashlib.sha256(captions.read_bytes()).hexdigest(),
        "pictures": hashlib.sha256(json.dumps(pictures).encode()).hexdigest(),
        "size": size,
    }
    digest, done_before = _earlier_run(out, settings)
    if done_before is not None:
        return done_before
    writer = _Writer(out)
    captioned: set[str] = set()
    try:
        for done, (number, entry) in enumerate(entries, 1):
            where = f"{captions} line {number}"
            name = _text_field(entry, ("file", "path", "image"), where)
            if not name:
                raise ImageCorpusError(f'{where}: give the picture\'s file name as "file"')
            path = folder / name
            if not path.is_file():
                raise ImageCorpusError(f"{where}: {name} is not in {folder}")
            caption_en = _text_field(entry, ("caption", "caption_en", "text"), where)
            caption_zh = _text_field(entry, ("caption_zh",), where)
            if not caption_en and not caption_zh:
                raise ImageCorpusError(f'{where}: {name} has no "caption"')
            captioned.add(Path(name).name)
            stem = hashlib.sha256(name.encode()).hexdigest()[:12]
            row = ImageRow(
                id=f"{set_name}-{stem}",
                path=f"{PICTURES}/{set_name}-{stem}.png",
                caption_en=caption_en,
                caption_zh=caption_zh,
                style=_text_field(entry, ("style",), where) or set_name,
                set=set_name,
                group=_text_field(entry, ("group",), where),
                split=split_of(name),
            )
            writer.add(row, _load_picture(path, size, where))
            if progress is not None:
                progress(done, len(entries))
        manifest = _manifest(set_name, size, settings, digest, writer)
        manifest["counts"]["uncaptioned_skipped"] = len(listed - captioned)
        manifest["sets"] = [
            {
                "name": set_name,
                "folder": str(folder.resolve()),
                "style": set_name,
                "licence": "",  # the owner's; not recorded
                "images": len(writer.rows),
            }
        ]
        writer.finish(manifest)
    except BaseException:
        writer.abandon()
        raise
    return ImageCorpusReport(out, manifest)


# ---------------------------------------------------------------- reading


def load_image_corpus(folder: Path) -> list[ImageRow]:
    """The rows of a prepared picture corpus, in its order."""
    rows_file = folder / ROWS
    if not (folder / MANIFEST).is_file() or not rows_file.is_file():
        raise ImageCorpusError(
            f"{folder} is not a prepared picture corpus (no {MANIFEST} and {ROWS}); "
            "make one with `musegpt prepare icons --out FOLDER`"
        )
    rows: list[ImageRow] = []
    for number, line in enumerate(rows_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(ImageRow(**json.loads(line)))
        except (ValueError, TypeError):
            raise ImageCorpusError(
                f"{rows_file} line {number} is damaged; prepare the corpus again"
            ) from None
    return rows


def corpus_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ImageCorpusError(f"{folder} has no readable {MANIFEST}; prepare it again") from None
    return manifest
