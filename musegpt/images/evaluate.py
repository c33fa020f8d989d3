"""`musegpt eval images`: caption fidelity, diversity and originality of an image model.

The caption set (`eval_captions.json`, English and Chinese, none a training caption
verbatim) has two parts: paraphrases of concepts the training set shows ("a red apple") and
the captions of held-out emoji (the test split: never seen in any style). Each caption is
drawn `per_caption` times.

- Fidelity: a classifier of the corpus's groups (animals-nature, food-drink, flags, ...),
  trained only on the training split, assigns each generated picture a group; the share
  assigned to the caption's group is compared with the same classifier's accuracy on the
  held-out test pictures. Both the classifier's training pictures and the real test pictures
  go through the model's tokenizer first, so real and generated pictures look alike to it.
- Diversity: the mean pixel RMSE (0-255) between the pictures of one caption.
- Originality: each picture's RMSE to its nearest training picture, and the share that are
  near-copies: at least `NEAR_COPY_SHARE` of its tokens equal to one training picture's,
  the training pictures counted also mirrored (`with_mirrors`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from musegpt.images.model import LAYOUT_SHARE, ImageModel
from musegpt.images.originality import NEAR_COPY_SHARE
from musegpt.images.sheet import GAP
from musegpt.images.tokenizer import ImageTokenizer
from musegpt.images.train import load_pixels, read_pictures, with_mirrors

CAPTIONS_FILE = "eval_captions.json"


@dataclass(frozen=True)
class EvalCaption:
    caption: str
    lang: str
    group: str
    kind: str  # "paraphrase" or "held-out"


def eval_captions() -> list[EvalCaption]:
    text = resources.files("musegpt.images").joinpath(CAPTIONS_FILE).read_text(encoding="utf-8")
    return [EvalCaption(r["caption"], r["lang"], r["group"], r["kind"]) for r in json.loads(text)]


def validation_captions(corpus: str | Path, limit: int = 60) -> list[EvalCaption]:
    """Captions of the corpus's validation pictures, for tuning a model's drawing settings
    and choosing its checkpoint without touching the evaluation set: one caption per
    validation emoji (its first style), English and Chinese alternately, `limit` in all,
    spread evenly over the validation split."""
    seen: dict[str, tuple[str, str, str]] = {}
    for picture in read_pictures(corpus):
        key = picture.id.split("-", 1)[-1]  # the emoji, whichever set drew it
        if picture.split == "val" and picture.group and len(picture.captions) == 2:
            seen.setdefault(key, (picture.captions[0], picture.captions[1], picture.group))
    rows = list(seen.values())
    chosen = [rows[i * len(rows) // limit] for i in range(min(limit, len(rows)))]
    return [
        EvalCaption(row[number % 2], ("en", "zh")[number % 2], row[2], "validation")
        for number, row in enumerate(chosen)
    ]


def features(pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """(N, res, res, 3) -> (N, 16*16*3 + 64): the picture at 16x16 and a 4x4x4 colour
    histogram of its non-white pixels."""
    n = pixels.shape[0]
    small = (
        np.stack(
            [np.asarray(Image.fromarray(p).resize((16, 16), Image.Resampling.BOX)) for p in pixels]
        ).astype(np.float32)
        / 255.0
    )
    bins = (pixels // 64).reshape(n, -1, 3)
    index = bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]
    coloured = pixels.reshape(n, -1, 3).min(axis=2) < 230
    histogram = np.stack(
        [
            np.bincount(i[c], minlength=64) / max(1, c.sum())
            for i, c in zip(index, coloured, strict=True)
        ]
    )
    return np.concatenate([small.reshape(n, -1), histogram], axis=1)


@dataclass
class GroupClassifier:
    model: Any
    groups: list[str]

    def predict(self, pixels: np.ndarray[Any, Any]) -> list[str]:
        return [str(g) for g in self.model.predict(features(pixels))]


def train_classifier(pixels: np.ndarray[Any, Any], groups: Sequence[str]) -> GroupClassifier:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=300))
    model.fit(features(pixels), list(groups))
    return GroupClassifier(model, sorted(set(groups)))


def rmse_matrix(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Pixel RMSE between every picture of `a` (N, ...) and every picture of `b` (M, ...)."""
    x = a.reshape(len(a), -1).astype(np.float32)
    y = b.reshape(len(b), -1).astype(np.float32)
    squared = (x * x).sum(1)[:, None] - 2.0 * x @ y.T + (y * y).sum(1)[None, :]
    distances: np.ndarray[Any, Any] = np.sqrt(np.maximum(squared, 0.0) / x.shape[1])
    return distances


@dataclass
class CaptionResult:
    caption: EvalCaption
    predicted: list[str]
    diversity: float
    nearest: list[float]
    near_copies: int
    pictures: list[Image.Image] = field(repr=False)


@dataclass
class ImageEvalReport:
    model: str
    per_caption: int
    guidance: float
    temperature: float
    top_k: int
    rerank: int
    classifier_accuracy: float  # on the held-out test pictures
    results: list[CaptionResult]
    seconds: float
    expand: str = "off"  # the caption expansion drawn with
    guard: bool = False  # whether near-copies were redrawn
    layout_temperature_ratio: float = 1.0  # the first rows' share of the temperature

    def fidelity(self, kind: str | None = None, lang: str | None = None) -> float:
        hits = total = 0
        for r in self.results:
            if (kind and r.caption.kind != kind) or (lang and r.caption.lang != lang):
                continue
            hits += sum(p == r.caption.group for p in r.predicted)
            total += len(r.predicted)
        return hits / max(total, 1)

    @property
    def diversity(self) -> float:
        return float(np.mean([r.diversity for r in self.results]))

    @property
    def nearest_rmse(self) -> float:
        return float(np.mean([d for r in self.results for d in r.nearest]))

    @property
    def near_copy_share(self) -> float:
        copies = sum(r.near_copies for r in self.results)
        return copies / max(1, sum(len(r.nearest) for r in self.results))

    def rows(self) -> list[dict[str, str]]:
        base = self.classifier_accuracy
        rows = []
        for kind, lang, label in (
            (None, None, "all captions"),
            ("paraphrase", None, "paraphrases of training concepts"),
            ("held-out", None, "held-out emoji"),
            (None, "en", "English"),
            (None, "zh", "Chinese"),
        ):
            share = self.fidelity(kind, lang)
            count = sum(
                1
                for r in self.results
                if (not kind or r.caption.kind == kind) and (not lang or r.caption.lang == lang)
            )
            rows.append(
                {
                    "captions": f"{label} ({count})",
                    "fidelity": f"{share:.1%}",
                    "of real accuracy": f"{share / base:.0%}" if base else "-",
                }
            )
        return rows


@dataclass
class Reference:
    """What generated pictures are measured against: the group classifier, its accuracy on
    the held-out test pictures, and the training pictures (tokens and pixels)."""

    classifier: GroupClassifier
    accuracy: float
    train_ids: np.ndarray[Any, Any]
    train_pixels: np.ndarray[Any, Any]


def build_reference(
    tokenizer: ImageTokenizer, corpus: str | Path, say: Callable[[str], None] = lambda m: None
) -> Reference:
    """The reference for pictures of `tokenizer`, from the picture folder `corpus` (its train
    split trains the classifier, its test split measures it)."""
    pictures = read_pictures(corpus)
    train = [p for p in pictures if p.split == "train" and p.group]
    test = [p for p in pictures if p.split == "test" and p.group]
    if not train or not test:
        raise ValueError(f"{corpus} needs grouped pictures in its train and test splits")
    say(f"tokenizing {len(train)} training and {len(test)} test pictures")
    # Near-copies and nearest distances count mirrored training pictures too.
    train_ids = tokenizer.encode_pixels(with_mirrors(load_pixels(train, tokenizer.resolution)))
    train_pixels = tokenizer.decode_pixels(train_ids)
    test_pixels = tokenizer.decode_pixels(
        tokenizer.encode_pixels(load_pixels(test, tokenizer.resolution))
    )
    say("training the group classifier")
    classifier = train_classifier(train_pixels[: len(train)], [p.group for p in train])
    accuracy = float(
        np.mean([a == p.group for a, p in zip(classifier.predict(test_pixels), test, strict=True)])
    )
    say(f"classifier accuracy on held-out pictures: {accuracy:.1%}")
    return Reference(classifier, accuracy, train_ids, train_pixels)


def evaluate_images(
    model: ImageModel,
    reference: Reference,
    *,
    per_caption: int = 4,
    seed: int = 0,
    guidance: float | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    rerank: int | None = None,
    expand: bool | None = None,
    guard: bool = True,
    limit: int | None = None,
    captions: Sequence[EvalCaption] | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> ImageEvalReport:
    """Draw `per_caption` pictures for each of `captions` (default: the fixed set) and
    measure them against `reference`. Sampling, caption expansion and the originality guard
    default to the model's own, as `ImageModel.draw` draws."""
    start = time.perf_counter()
    tokenizer = model.tokenizer
    captions = list(captions or eval_captions())[:limit]
    results = []
    for number, caption in enumerate(captions):
        images = model.draw(
            caption.caption, n=per_caption, size=tokenizer.resolution, seed=seed + number,
            guidance=guidance, temperature=temperature, top_k=top_k, rerank=rerank,
            expand=expand, guard=guard,
        )  # fmt: skip
        pixels = np.stack([np.asarray(im.convert("RGB")) for im in images])
        ids = tokenizer.encode_pixels(pixels)
        distances = rmse_matrix(pixels, reference.train_pixels)
        same = np.stack([(reference.train_ids == row[None, :]).mean(axis=1).max() for row in ids])
        pairs = [
            float(rmse_matrix(pixels[i : i + 1], pixels[j : j + 1])[0, 0])
            for i, j in combinations(range(len(pixels)), 2)
        ]
        results.append(
            CaptionResult(
                caption,
                reference.classifier.predict(pixels),
                float(np.mean(pairs)) if pairs else 0.0,
                [float(d) for d in distances.min(axis=1)],
                int((same >= NEAR_COPY_SHARE).sum()),
                images,
            )
        )
        if (number + 1) % 20 == 0:
            say(f"{number + 1}/{len(captions)} captions drawn")
    return ImageEvalReport(
        model.name,
        per_caption,
        model.guidance if guidance is None else guidance,
        model.temperature if temperature is None else temperature,
        model.top_k if top_k is None else top_k,
        model.rerank if rerank is None else rerank,
        reference.accuracy,
        results,
        time.perf_counter() - start,
        model.expansion_mode(expand),
        guard and model.training_grids is not None,
        model.layout_temperature_ratio,
    )


def examples_grid(
    results: Sequence[CaptionResult], cell: int = 96, label: int = 230, per_kind: int = 10
) -> Image.Image:
    """One row per caption, up to `per_kind` paraphrases then `per_kind` held-out emoji: the
    English caption (and the caption the model read, when it was expanded), then its
    pictures (PIL's built-in font has no CJK glyphs)."""
    english = [r for r in results if r.caption.lang == "en"]
    rows = [r for r in english if r.caption.kind == "paraphrase"][:per_kind]
    rows += [r for r in english if r.caption.kind != "paraphrase"][:per_kind]
    n = max(len(r.pictures) for r in rows)
    width = label + n * (cell + GAP) + GAP
    sheet = Image.new("RGB", (width, len(rows) * (cell + GAP) + GAP), "white")
    pen = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=15)
    for i, result in enumerate(rows):
        top = GAP + i * (cell + GAP)
        text = f"{result.caption.caption}\n({result.caption.group})"
        read = result.pictures[0].info.get("caption", result.caption.caption)
        if read != result.caption.caption:  # caption expansion: what the model was given
            text += f"\ndrawn as: {read[:22]}"
        pen.multiline_text((GAP, top + cell // 3), text, fill="black", font=font)
        for j, picture in enumerate(result.pictures):
            sheet.paste(
                picture.resize((cell, cell), Image.Resampling.NEAREST),
                (label + j * (cell + GAP), top),
            )
    return sheet


def markdown_report(report: ImageEvalReport, command: str, machine: str) -> str:
    from musegpt.studio.evaluate import markdown_table

    copies = report.near_copy_share
    lines = [
        "# Image model evaluation",
        "",
        f"Model `{report.model}`, {report.per_caption} pictures per caption, guidance "
        f"{report.guidance:g}, temperature {report.temperature:g}, top-k "
        f"{report.top_k or 'off'}"
        + (
            f" (the first {LAYOUT_SHARE:.0%} of the rows at "
            f"{report.layout_temperature_ratio:g} of that temperature)"
            if report.layout_temperature_ratio != 1.0
            else ""
        )
        + f", best of {report.rerank} candidates per picture by the model's caption-picture "
        f"scorer, caption expansion {report.expand}, originality guard "
        f"{'on' if report.guard else 'off'}, {len(report.results)} captions; "
        f"{report.seconds:.0f} s to "
        f"draw and measure them on {machine}. Command: `{command}`.",
        "",
        f"Group classifier (logistic regression on 16x16 pixels and a colour histogram, trained "
        f"on the training split's pictures after the model's tokenizer): "
        f"**{report.classifier_accuracy:.1%}** accuracy on the held-out test pictures "
        f"(chance: {1 / 9:.1%} over 9 groups).",
        "",
        "## Caption fidelity",
        "",
        "The share of generated pictures the classifier puts in the caption's group, and that "
        "share as a fraction of the classifier's accuracy on real held-out pictures (target: "
        "at least 60%).",
        "",
        markdown_table(report.rows()),
        "",
        "## Diversity and originality",
        "",
        markdown_table(
            [
                {
                    "mean pairwise RMSE within a caption": f"{report.diversity:.1f}",
                    "mean RMSE to the nearest training picture": f"{report.nearest_rmse:.1f}",
                    "near-copies": f"{copies:.1%} (target: at most 5%)",
                }
            ]
        ),
        "",
        f"RMSE on 0-255 pixel values at the model's {report.results[0].pictures[0].width}"
        f"x{report.results[0].pictures[0].width} pixels. A near-copy has at least "
        f"{NEAR_COPY_SHARE:.0%} of its tokens equal to one training picture's or to its "
        "mirror image's (both count as training pictures here).",
        "",
    ]
    return "\n".join(lines)


def machine_description() -> str:
    import os
    import platform

    return f"{platform.machine()} {platform.processor() or 'CPU'}, {os.cpu_count()} cores"
