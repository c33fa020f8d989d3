"""Training an image model: caption tokens then image tokens, one GPT, the standard trainer.

    musegpt prepare icons --out corpora/icons
    musegpt train-images corpora/icons --config configs/icons.yaml --out runs/icons

A picture folder (`images.jsonl` + PNGs, as `musegpt prepare` writes) becomes records of
`record_length` tokens (caption padded to a fixed length, `<image>`, the picture's grid):
one per caption language, plus a captionless one for every `UNCONDITIONAL_EVERY`-th picture
so the model can be guided (classifier-free guidance). The records are written as an
ordinary prepared corpus in `OUT/records/`, and `Trainer` reads them with
`window_stride = record_length`, so every window is exactly one record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from musegpt.data.dataset import MANIFEST, TOKENIZER, PreparedCorpus, token_dtype
from musegpt.fileio import atomic_write, atomic_write_text
from musegpt.images.model import (
    GUIDANCE_KEY,
    LAYOUT_KEY,
    RERANK_KEY,
    TEMPERATURE_KEY,
    TOP_K_KEY,
)
from musegpt.images.tokenizer import ImageTokenizer, caption_text
from musegpt.model.io import MODEL_FILE, load_model, save_model
from musegpt.train.config import TrainConfig

ROWS_FILE = "images.jsonl"
RECORDS = "records"
UNCONDITIONAL_EVERY = 10
TAG_WORDS = 3  # tags in a tag caption: most captions stay within 16 tokens
# A mirror image is not the same thing for these: a flag, a symbol (letters, digits, keycaps,
# signs) or anything whose name says a side or shows a clock's hands.
UNMIRRORED_GROUPS = frozenset({"flags", "symbols"})
SIDED_WORDS = ("left", "right", "clock", "左", "右", "钟")


MIN_RESOLUTION, MAX_RESOLUTION = 4, 256
MAX_CODEBOOK = 16384


@dataclass(frozen=True)
class TokenizerSettings:
    # 4x4 patches of 32x32 pixels: 64 tokens a picture, what two shared CPU cores can
    # train in an hour (docs/images.md compares palettes and codebooks)
    resolution: int = 32
    patch: int = 4
    codebook_size: int = 1024
    text_vocab_size: int = 1024
    caption_length: int = 16
    seed: int = 0
    # Training records also caption each picture with its tags (twice the records; the
    # validation split keeps the names only, so its loss compares with a run without tags).
    tag_captions: bool = False
    # Training records also show each mirrorable picture flipped left to right, with the
    # same captions (see `mirrorable`): twice the pictures for the same corpus.
    flip: bool = False
    # Training records also show every picture (mirrored ones too) once more, moved by up to
    # this many pixels each way (see `shifted`): a picture tokenised on other patch
    # boundaries, so repeating it is less a replay of the same tokens. 0: none.
    shift: int = 0
    # Training records of pictures in these corpus groups (e.g. "food-drink") are repeated
    # until they make up `focus_share` of the training records; the other groups stay,
    # each record once, as replay (see `focused`). Empty: every record once.
    focus: tuple[str, ...] = ()
    focus_share: float = 0.75

    def __post_init__(self) -> None:
        if not MIN_RESOLUTION <= self.resolution <= MAX_RESOLUTION:
            raise ValueError(
                f"resolution must be between {MIN_RESOLUTION} and {MAX_RESOLUTION} pixels "
                f"(got {self.resolution})"
            )
        if self.patch < 1 or self.resolution % self.patch:
            raise ValueError(
                f"patch must divide the resolution {self.resolution} (got {self.patch}); "
                "e.g. --resolution 64 --patch 4"
            )
        if not 2 <= self.codebook_size <= MAX_CODEBOOK:
            raise ValueError(
                f"codebook must be between 2 and {MAX_CODEBOOK} entries (got {self.codebook_size})"
            )
        if not 0 <= self.shift < self.resolution // 2:
            raise ValueError(
                f"shift must be between 0 and {self.resolution // 2 - 1} pixels at resolution "
                f"{self.resolution} (got {self.shift})"
            )
        if not 0 < self.focus_share < 1:
            raise ValueError(f"focus share must be above 0 and below 1 (got {self.focus_share})")


@dataclass(frozen=True)
class Picture:
    """One captioned picture of a prepared folder (an images.jsonl row, see images/corpus.py)."""

    path: Path
    captions: tuple[str, ...]  # English, Chinese (either may be missing)
    style: str
    group: str
    split: str
    id: str = ""
    # The set's tags (English, Chinese), for extra records with `tag_captions`.
    tags: tuple[tuple[str, ...], ...] = ()


def read_pictures(folder: str | Path) -> list[Picture]:
    """The rows of a picture folder's `images.jsonl` (a clear error if it is not one)."""
    folder = Path(folder).expanduser()
    rows_file = folder / ROWS_FILE
    if not rows_file.is_file():
        raise ValueError(
            f"{folder} is not a prepared picture folder (no {ROWS_FILE}); make one with "
            "`musegpt prepare icons --out corpora/icons` or "
            "`musegpt prepare my-pictures/ --captions captions.jsonl --out corpora/mine`"
        )
    pictures = []
    for number, line in enumerate(rows_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row: dict[str, Any] = json.loads(line)
            captions = tuple(c for c in (row.get("caption_en", ""), row.get("caption_zh", "")) if c)
            pictures.append(
                Picture(
                    folder / row["path"],
                    captions,
                    row.get("style") or "",
                    row.get("group") or "",
                    row.get("split") or "train",
                    row.get("id") or "",
                    (tuple(row.get("tags_en") or ()), tuple(row.get("tags_zh") or ())),
                )
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{rows_file}, line {number}: not a picture row ({err})") from None
    return pictures


def load_pixels(pictures: Sequence[Picture], resolution: int) -> np.ndarray[Any, Any]:
    from musegpt.images.tokenizer import to_rgb_array

    out = np.empty((len(pictures), resolution, resolution, 3), dtype=np.uint8)
    for i, picture in enumerate(pictures):
        with Image.open(picture.path) as image:
            out[i] = to_rgb_array(image, resolution)
    return out


def _unconditional(picture: Picture) -> bool:
    digest = hashlib.blake2b(str(picture.path.name).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % UNCONDITIONAL_EVERY == 0


def tag_captions(picture: Picture) -> list[str]:
    """Extra captions from a picture's tags, one per language: up to `TAG_WORDS` of its
    tags in an order fixed by the picture and tag (English joined by spaces, Chinese
    run together), e.g. "fruit red apple" and "水果红苹果"."""

    def order(tag: str) -> bytes:
        return hashlib.blake2b(f"{picture.id or picture.path.name}/{tag}".encode()).digest()

    captions = []
    for tags, joiner in zip(picture.tags, (" ", ""), strict=False):
        chosen = sorted(dict.fromkeys(tags), key=order)[:TAG_WORDS]
        if chosen:
            captions.append(joiner.join(chosen))
    return captions


def mirrorable(picture: Picture) -> bool:
    """Whether `picture` flipped left to right still shows what its captions say."""
    if picture.group in UNMIRRORED_GROUPS:
        return False
    words = " ".join([*picture.captions, *(t for tags in picture.tags for t in tags)]).lower()
    return not any(word in words for word in SIDED_WORDS)


def with_mirrors(pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """`pixels` (N, H, W, 3) followed by each picture flipped left to right: what a near-copy
    is measured against, since a model trained with `flip` has seen both."""
    return np.concatenate([pixels, np.ascontiguousarray(pixels[:, :, ::-1])])


def shift_offset(picture: Picture, max_shift: int, salt: str = "") -> tuple[int, int]:
    """The (rows, columns) a picture is moved by for `shift`: each in -max_shift..max_shift,
    not both 0, fixed by the picture (and `salt`, so its mirror image moves otherwise)."""
    side = 2 * max_shift + 1
    digest = hashlib.blake2b(f"{picture.id or picture.path.name}/shift{salt}".encode()).digest()
    # one of the side*side - 1 offsets other than (0, 0)
    index = int.from_bytes(digest[:4], "little") % (side * side - 1)
    index += index >= (side * side) // 2
    return index // side - max_shift, index % side - max_shift


def shifted(
    pixels: np.ndarray[Any, Any], offsets: Sequence[tuple[int, int]]
) -> np.ndarray[Any, Any]:
    """Each picture of `pixels` (N, H, W, 3) moved by its (rows, columns) offset, on white
    (pictures are composited on white; what moves out of the square is lost)."""
    out = np.full_like(pixels, 255)
    size = pixels.shape[1]
    for picture, source, (dy, dx) in zip(out, pixels, offsets, strict=True):
        picture[max(dy, 0) : size + min(dy, 0), max(dx, 0) : size + min(dx, 0)] = source[
            max(-dy, 0) : size + min(-dy, 0), max(-dx, 0) : size + min(-dx, 0)
        ]
    return out


def encode_records(
    tokenizer: ImageTokenizer,
    pictures: Sequence[Picture],
    pixels: np.ndarray[Any, Any],
    *,
    with_tags: bool = False,
    flip: bool = False,
    shift: int = 0,
) -> np.ndarray[Any, Any]:
    """(records, record_length) token ids: each picture once per caption (and, `with_tags`,
    once per language with its tags as the caption), and captionless for one picture in
    UNCONDITIONAL_EVERY; with `flip`, the mirrorable pictures again, flipped left to right,
    with the same captions (after all the unflipped records); with `shift`, all of those
    pictures again, each moved by up to `shift` pixels each way (`shift_offset`)."""
    chosen = [i for i, picture in enumerate(pictures) if mirrorable(picture)] if flip else []
    # (pictures, their pixels, the salt of their shift) of each kind of record
    kinds = [(list(pictures), pixels, "")]
    if chosen:
        mirrors = np.ascontiguousarray(pixels[chosen, :, ::-1])
        kinds.append(([pictures[i] for i in chosen], mirrors, "/mirror"))
    if shift:
        kinds += [
            (shown, shifted(seen, [shift_offset(p, shift, salt) for p in shown]), salt)
            for shown, seen, salt in list(kinds)
        ]
    records: list[np.ndarray[Any, Any]] = []
    for shown, seen, _ in kinds:
        records += _picture_records(tokenizer, shown, tokenizer.encode_pixels(seen), with_tags)
    return np.asarray(records, dtype=np.int64).reshape(-1, tokenizer.record_length)


def _picture_records(
    tokenizer: ImageTokenizer,
    pictures: Sequence[Picture],
    image_ids: np.ndarray[Any, Any],
    with_tags: bool,
) -> list[np.ndarray[Any, Any]]:
    records: list[np.ndarray[Any, Any]] = []
    for picture, ids in zip(pictures, image_ids, strict=True):
        captions = [*picture.captions, *(tag_captions(picture) if with_tags else ())]
        prompts = [tokenizer.prompt_ids(c, picture.style or None) for c in captions]
        if _unconditional(picture):
            prompts.append(tokenizer.prompt_ids(""))
        records.extend(np.concatenate([np.asarray(p), ids]) for p in prompts)
    return records


def write_records(
    out: Path, tokenizer: ImageTokenizer, splits: dict[str, np.ndarray[Any, Any]]
) -> PreparedCorpus:
    """`splits` as a prepared corpus folder (what `Trainer` reads)."""
    out.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(tokenizer.vocab_size)
    info: dict[str, dict[str, Any]] = {}
    for split, records in splits.items():
        file = f"{split}.bin"
        records.astype(dtype).tofile(out / file)
        info[split] = {"file": file, "documents": len(records), "tokens": int(records.size)}
    atomic_write_text(out / TOKENIZER, tokenizer.to_json())
    manifest = {
        "format": "musegpt-image-records-1",
        "record_length": tokenizer.record_length,
        "dtype": dtype.name,
        "splits": info,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))
    return PreparedCorpus.open(out)


def build_records(
    folder: str | Path,
    out: Path,
    settings: TokenizerSettings,
    tokenizer: ImageTokenizer | None = None,
) -> PreparedCorpus:
    """Tokenizer (fitted on the train split, unless given: a model being trained on) and
    records, or the ones already in `out` (so a resumed run trains on the very same tokens)."""
    if (out / MANIFEST).is_file():
        return PreparedCorpus.open(out)
    pictures = read_pictures(folder)
    train = [p for p in pictures if p.split == "train"]
    val = [p for p in pictures if p.split == "val"] or train[: max(1, len(train) // 20)]
    if not train:
        raise ValueError(f"{folder} has no pictures in its train split")
    if tokenizer is not None:
        return write_records(out, tokenizer, encoded_splits(tokenizer, train, val, settings))
    train_pixels = load_pixels(train, settings.resolution)
    captions = [caption_text(c, p.style or None) for p in train for c in p.captions]
    tokenizer = ImageTokenizer.train(
        captions,
        train_pixels,
        resolution=settings.resolution,
        patch=settings.patch,
        codebook_size=settings.codebook_size,
        text_vocab_size=settings.text_vocab_size,
        caption_length=settings.caption_length,
        styles=[p.style for p in train if p.style],
        seed=settings.seed,
    )
    return write_records(out, tokenizer, encoded_splits(tokenizer, train, val, settings))


def encoded_splits(
    tokenizer: ImageTokenizer, train: list[Picture], val: list[Picture], settings: TokenizerSettings
) -> dict[str, np.ndarray[Any, Any]]:
    """Training records with the settings' tags, flips, shifts and focus; validation records
    plain (names only, unflipped, unmoved, every group once), so validation losses of runs
    with and without them compare."""

    def encoded(pictures: list[Picture]) -> np.ndarray[Any, Any]:
        pixels = load_pixels(pictures, tokenizer.resolution)
        return encode_records(
            tokenizer,
            pictures,
            pixels,
            with_tags=settings.tag_captions,
            flip=settings.flip,
            shift=settings.shift,
        )

    val_records = encode_records(tokenizer, val, load_pixels(val, tokenizer.resolution))
    if not settings.focus:
        return {"train": encoded(train), "val": val_records}
    unknown = sorted(set(settings.focus) - {p.group for p in train})
    if unknown:
        groups = ", ".join(sorted({p.group for p in train if p.group}))
        raise ValueError(
            f"focus group {', '.join(unknown)} has no training pictures; the groups: {groups}"
        )
    inside = [p for p in train if p.group in settings.focus]
    outside = [p for p in train if p.group not in settings.focus]
    return {
        "train": focused(encoded(inside), encoded(outside), settings.focus_share, settings.seed),
        "val": val_records,
    }


def focused(
    inside: np.ndarray[Any, Any], outside: np.ndarray[Any, Any], share: float, seed: int = 0
) -> np.ndarray[Any, Any]:
    """The `inside` records repeated (whole copies, then a fixed random part of them once
    more) until they are `share` of all the records, followed by the `outside` ones once.
    The trainer draws records uniformly, so this is how often each is read; refused when
    the inside records are already more than `share` (nothing to repeat)."""
    if not len(inside):
        raise ValueError("no training records in the focus groups")
    wanted = round(share / (1 - share) * len(outside))
    if wanted < len(inside):
        raise ValueError(
            f"the focus groups are already {len(inside) / (len(inside) + len(outside)):.0%} of "
            f"the training records, more than the focus share {share:.0%}: raise it"
        )
    copies, rest = divmod(wanted, len(inside))
    extra = np.random.default_rng(seed).permutation(len(inside))[:rest]
    return np.concatenate([np.tile(inside, (copies, 1)), inside[np.sort(extra)], outside])


def record_config(config: TrainConfig, tokenizer: ImageTokenizer) -> TrainConfig:
    """`config` with the window set to one record."""
    length = tokenizer.record_length
    return config.replace({"block_size": length - 1, "window_stride": length})


def train_image_model(
    folder: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    settings: TokenizerSettings | None = None,
    guidance: float = 1.0,
    resume: bool = False,
    progress: bool = True,
    base: str | Path | None = None,
) -> Path:
    """Train on a picture folder; returns the best model file (`out_dir/best`), which also
    records `guidance` as the model's default. `base` (an image model file) continues from
    its weights, with its tokenizer."""
    from musegpt.train.trainer import BEST, Trainer

    out = Path(out_dir).expanduser()
    gpt = None
    start: ImageTokenizer | None = None
    if base is not None:
        gpt, loaded = load_model(Path(base).expanduser())
        if not isinstance(loaded, ImageTokenizer):
            raise ValueError(f"{base} is a text model, not an image model")
        start = loaded
    corpus = build_records(folder, out / RECORDS, settings or TokenizerSettings(), start)
    tokenizer = corpus.tokenizer
    if not isinstance(tokenizer, ImageTokenizer):
        raise ValueError(f"{out / RECORDS} holds text records, not image records")
    Trainer(
        record_config(config, tokenizer),
        corpus,
        out,
        model=gpt,
        tokenizer=start,
        resume=resume,
        progress=progress,
    ).run()
    best = out / BEST / MODEL_FILE
    set_drawing_defaults(best, guidance)
    return best


def set_drawing_defaults(
    model_file: str | Path,
    guidance: float = 1.0,
    temperature: float = 1.0,
    top_k: int = 0,
    rerank: int = 1,
    layout_temperature_ratio: float = 1.0,
) -> None:
    """Record the sampling a model draws with by default in its file (the first rows of a
    picture at `layout_temperature_ratio` times the temperature)."""
    if not 0 < layout_temperature_ratio <= 1:
        raise ValueError(
            "layout_temperature_ratio must be above 0 and at most 1 "
            f"(got {layout_temperature_ratio})"
        )
    from musegpt.model.io import read_metadata

    model_file = Path(model_file)
    meta = read_metadata(model_file)
    gpt, tokenizer = load_model(model_file)
    for own in ("config", "tokenizer", "format"):
        meta.pop(own, None)
    defaults = {
        GUIDANCE_KEY: f"{guidance:g}",
        TEMPERATURE_KEY: f"{temperature:g}",
        TOP_K_KEY: str(top_k),
        RERANK_KEY: str(rerank),
        LAYOUT_KEY: f"{layout_temperature_ratio:g}",
    }
    save_model(model_file, gpt, tokenizer, {**meta, **defaults})


def store_half_precision(model_file: str | Path) -> None:
    """Rewrite `model_file` with its weights as float16 (half the bytes; loading makes them
    float32 again, as every MuseGPT model runs). The last step before shipping: any later
    rewrite of the file (`set_drawing_defaults`, storing grids or a scorer) saves float32."""
    import torch
    from safetensors.torch import load_file, save_file

    from musegpt.model.io import read_metadata, resolve_model_file

    file = resolve_model_file(model_file)
    meta = read_metadata(file)
    state = {k: v.to(torch.float16) if v.is_floating_point() else v
             for k, v in load_file(str(file)).items()}  # fmt: skip
    atomic_write(file, lambda path: save_file(state, str(path), metadata=meta))


TINY = {
    "n_layer": 2,
    "n_head": 2,
    "n_embd": 32,
    "batch_size": 8,
    "max_iters": 80,
    "learning_rate": 1e-2,
    "min_lr": 1e-3,
    "warmup_iters": 5,
    "eval_interval": 40,
    "eval_iters": 2,
    "log_interval": 20,
    "dtype": "float32",
    "device": "cpu",
}


def train_tiny_image_model(out_dir: Path, images: list[tuple[str, Image.Image]]) -> Path:
    """A tiny image model (8x8 pixels, 16-colour palette) trained in a few seconds on
    `images` (caption, picture), for tests; returns its model file."""
    out_dir = Path(out_dir)
    folder = out_dir / "pictures"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (caption, image) in enumerate(images):
        path = f"images/{i}.png"
        image.convert("RGB").save(folder / path)
        rows.append(
            {
                "id": str(i),
                "path": path,
                "caption_en": caption,
                "style": "tiny",
                "group": caption,
                "split": "train",
            }
        )
    atomic_write_text(folder / ROWS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
    settings = TokenizerSettings(
        resolution=8, patch=1, codebook_size=16, text_vocab_size=300, caption_length=16
    )
    return train_image_model(
        folder, out_dir / "run", TrainConfig.from_dict(TINY), settings=settings, progress=False
    )
