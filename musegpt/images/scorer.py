"""A small contrastive caption-picture scorer (a tiny CLIP) for reranking drawn pictures.

DALL-E drew many candidates for a caption and kept the ones a separately trained
contrastive model (CLIP) scored best. This is that model at the image GPT's scale: a small
CNN reads a 32x32 picture, a one-layer transformer reads the caption's tokens (the image
model's own caption tokenizer), and both are projected to unit vectors whose dot product is
the score. It is trained with a symmetric InfoNCE loss on the corpus's **training split**
only: each batch holds one picture of each of `batch_size` different emoji, each with one
of its captions (English or Chinese name, a tag caption, or the name with an article or
numeral and measure word: "a red apple", "一个红苹果"), the pictures mirrored (where
`mirrorable`) and shifted by a pixel or two, and passed through the image tokenizer first,
so they look like what the GPT draws.

The scorer is stored in the image model's file (metadata `image_scorer`: its config and its
float16 weights, compressed), so a model file carries it wherever it is copied; a file
without one draws as before.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from musegpt.images.tokenizer import ImageTokenizer

SCORER_KEY = "image_scorer"  # model-file metadata: the scorer's config and weights


@dataclass(frozen=True)
class ScorerConfig:
    width: int = 128  # the shared embedding's size
    caption_length: int = 24  # caption tokens read (more are cut)
    # training
    steps: int = 3000
    batch_size: int = 256  # pictures of different emoji a batch: the InfoNCE negatives
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    variants: int = 4  # augmented copies of each training picture, made once
    max_shift: int = 2  # pixels a picture is shifted by at most, each way
    checkpoint_every: int = 250
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScorerConfig:
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(
                f"unknown scorer setting(s): {', '.join(unknown)}; known: {', '.join(known)}"
            )
        values: dict[str, Any] = {}
        for name, value in data.items():
            kind = float if known[name] == "float" else int
            try:
                values[name] = kind(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"scorer setting {name} must be a number (got {value!r})"
                ) from None
        return cls(**values)

    def with_overrides(self, overrides: Sequence[str]) -> ScorerConfig:
        """`key=value` overrides, as the trainers' command lines take them."""
        data: dict[str, Any] = asdict(self)
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not key=value (e.g. steps=500)")
            data[key.strip()] = value.strip()
        return ScorerConfig.from_dict(data)


def load_scorer_config(path: str | Path | None, overrides: Sequence[str] = ()) -> ScorerConfig:
    """The settings of a YAML file (read as the trainer's are), then `overrides`."""
    from musegpt.train.config import read_config_file

    data = read_config_file(path) if path is not None else {}
    return ScorerConfig.from_dict(data).with_overrides(overrides)


def _conv(into: int, out: int) -> list[nn.Module]:
    return [nn.Conv2d(into, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.GELU()]


class CaptionPictureScorer(nn.Module):
    """Caption and picture encoders into one space; `score` is their cosine similarity."""

    def __init__(self, config: ScorerConfig, vocab_size: int, resolution: int) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.resolution = resolution
        width = config.width
        # 32x32 -> 16 -> 8 -> 4: the flattened 4x4 map keeps where things are, which
        # matters for icons (a face's eyes above its mouth, a flag's stripes)
        self.picture = nn.Sequential(
            *_conv(3, 32), nn.MaxPool2d(2),
            *_conv(32, 64), nn.MaxPool2d(2),
            *_conv(64, 128), nn.MaxPool2d(2),
            *_conv(128, 128),
            nn.Flatten(), nn.Linear(128 * (resolution // 8) ** 2, width),
        )  # fmt: skip
        # one id past the vocabulary pads
        self.token = nn.Embedding(vocab_size + 1, width)
        self.position = nn.Parameter(torch.zeros(config.caption_length, width))
        self.caption = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(
                width, 4, 2 * width, dropout=0.0, batch_first=True, norm_first=True
            ),
            num_layers=1,
            enable_nested_tensor=False,
        )
        self.caption_out = nn.Linear(width, width)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    def encode_pictures(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, res, res, 3) uint8 -> (N, width) unit vectors."""
        x = pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return F.normalize(self.picture(x), dim=-1)

    def encode_captions(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, caption_length) token ids (padded with vocab_size) -> (N, width) unit vectors."""
        pad = ids == self.vocab_size
        x = self.token(ids) + self.position[: ids.shape[1]]
        x = self.caption(x, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        pooled = (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return F.normalize(self.caption_out(pooled), dim=-1)

    def logits(self, ids: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """(captions, pictures) similarities times the learnt temperature."""
        scale = self.log_scale.clamp(max=float(np.log(100))).exp()
        return scale * self.encode_captions(ids) @ self.encode_pictures(pixels).T

    # ------------------------------------------------------------------ storage

    def to_metadata(self) -> str:
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in self.state_dict().items()
                 if v.is_floating_point()}  # fmt: skip
        head = {"config": asdict(self.config), "vocab_size": self.vocab_size,
                "resolution": self.resolution}  # fmt: skip
        packed = zlib.compress(save_tensors(state), 9)
        return json.dumps(head) + "\n" + base64.b64encode(packed).decode("ascii")

    @classmethod
    def from_metadata(cls, text: str) -> CaptionPictureScorer:
        head_text, _, data = text.partition("\n")
        head = json.loads(head_text)
        scorer = cls(ScorerConfig(**head["config"]), head["vocab_size"], head["resolution"])
        state = load_tensors(zlib.decompress(base64.b64decode(data)))
        scorer.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        return scorer.eval()


class CaptionScorer:
    """A trained scorer with the caption tokenizer it reads: scores captions against pixels."""

    def __init__(self, model: CaptionPictureScorer, tokenizer: ImageTokenizer) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer

    def caption_ids(self, captions: Sequence[str]) -> torch.Tensor:
        return torch.tensor(
            [caption_ids(self.tokenizer, c, self.model.config.caption_length) for c in captions],
            dtype=torch.long,
        )

    def similarity(self, caption: str, pixels: np.ndarray[Any, Any]) -> torch.Tensor:
        """Cosine similarity of `caption` with each picture of `pixels` (N, res, res, 3)."""
        with torch.inference_mode():
            text = self.model.encode_captions(self.caption_ids([caption]))
            pictures = self.model.encode_pictures(self.pictures(pixels))
            return (pictures @ text[0]).float()

    def pictures(self, pixels: np.ndarray[Any, Any]) -> torch.Tensor:
        """`pixels` (N, size, size, 3) at the scorer's resolution: a scorer trained on
        32x32 pictures also ranks a 64x64 model's (shrunk, each 2x2 pixels averaged)."""
        size = self.model.resolution
        if pixels.shape[1:3] != (size, size):
            pixels = np.stack(
                [np.asarray(Image.fromarray(p).resize((size, size), Image.Resampling.BOX))
                 for p in pixels]
            )  # fmt: skip
        return torch.from_numpy(np.ascontiguousarray(pixels))

    def matrix(
        self, captions: Sequence[str], pixels: np.ndarray[Any, Any], chunk: int = 512
    ) -> torch.Tensor:
        """(captions, pictures) cosine similarities."""
        with torch.inference_mode():
            text = self.model.encode_captions(self.caption_ids(captions))
            parts = [
                self.model.encode_pictures(self.pictures(part))
                for part in (pixels[i : i + chunk] for i in range(0, len(pixels), chunk))
            ]
            return text @ torch.cat(parts).T


def caption_ids(tokenizer: ImageTokenizer, caption: str, length: int) -> list[int]:
    """A caption's tokens as the scorer reads them: lower-cased, no style, padded."""
    ids = tokenizer.text.encode(" ".join(caption.lower().split()))[:length]
    return ids + [tokenizer.text.vocab_size] * (length - len(ids))


def store_scorer(model_file: str | Path, scorer: CaptionPictureScorer) -> None:
    """Keep `scorer` in the image model file `model_file` (rewritten with the same weights)."""
    from musegpt.model.io import load_model, read_metadata, save_model

    gpt, tokenizer = load_model(model_file)
    if not isinstance(tokenizer, ImageTokenizer):
        raise ValueError(f"{model_file} is a text model, not an image model")
    meta = read_metadata(model_file)
    for own in ("config", "tokenizer", "format"):  # save_model writes these itself
        meta.pop(own, None)
    meta[SCORER_KEY] = scorer.to_metadata()
    save_model(Path(model_file), gpt, tokenizer, meta)


def copy_scorer(source_file: str | Path, model_file: str | Path) -> None:
    """Keep the scorer of image model file `source_file` in `model_file` too: a scorer reads
    captions with its model's caption tokenizer, so both must have the same one (pictures of
    another resolution are shrunk or enlarged to the scorer's, see `CaptionScorer.pictures`)."""
    from musegpt.model.io import read_metadata

    meta = read_metadata(source_file)
    if SCORER_KEY not in meta:
        raise ValueError(f"{source_file} keeps no caption-picture scorer to copy")
    source, target = (_image_tokenizer(f) for f in (source_file, model_file))
    if source.text.to_json() != target.text.to_json():
        raise ValueError(
            f"{model_file} reads captions with another tokenizer than {source_file}, so its "
            f"scorer would misread them: train one with `musegpt train-scorer --model {model_file}`"
        )
    store_scorer(model_file, CaptionPictureScorer.from_metadata(meta[SCORER_KEY]))


def _image_tokenizer(model_file: str | Path) -> ImageTokenizer:
    from musegpt.model.io import read_metadata
    from musegpt.tokenizer.base import tokenizer_from_json

    tokenizer = tokenizer_from_json(read_metadata(model_file)["tokenizer"])
    if not isinstance(tokenizer, ImageTokenizer):
        raise ValueError(f"{model_file} is a text model, not an image model")
    return tokenizer
