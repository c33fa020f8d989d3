"""The image tokenizer: a caption's text tokens, then a picture as a grid of codebook tokens.

A picture is composited on white, shrunk to `resolution` pixels square and cut into
`patch` x `patch` pixel patches; each patch becomes the id of its nearest codebook entry
(a k-means codebook over training patches: with `patch == 1` it is a colour palette). The
choice between palettes and patch codebooks, with reconstruction errors and sequence
lengths, is measured in docs/images.md.

One vocabulary serves the whole GPT: the caption tokenizer's ids first, then `<pad>` (fills
a caption to its fixed length), `<image>` (the picture starts here), then one id per
codebook entry. Every training record has the same length, `record_length`, so image tokens
always sit at the same positions. The tokenizer is saved in the model file's metadata like
the text tokenizers (kind "image").
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from musegpt.tokenizer.base import Tokenizer, tokenizer_from_json

PAD = "<pad>"
IMAGE = "<image>"


def to_rgb_array(image: Image.Image, resolution: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """`image` composited on white and shrunk (box filter: each pixel is the mean of the area
    it covers) to resolution x resolution, as a (resolution, resolution, 3) uint8 array."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    if rgb.size != (resolution, resolution):
        rgb = rgb.resize((resolution, resolution), Image.Resampling.BOX)
    return np.asarray(rgb, dtype=np.uint8)


def to_patches(pixels: np.ndarray[Any, Any], patch: int) -> np.ndarray[Any, Any]:
    """(N, H, W, 3) pixels -> (N, H/patch * W/patch, patch*patch*3), row-major patches."""
    n, h, w, c = pixels.shape
    grid = pixels.reshape(n, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return grid.reshape(n, (h // patch) * (w // patch), patch * patch * c)


def from_patches(
    patches: np.ndarray[Any, Any], resolution: int, patch: int
) -> np.ndarray[Any, Any]:
    """The inverse of `to_patches`."""
    n, side = patches.shape[0], resolution // patch
    grid = patches.reshape(n, side, side, patch, patch, 3).transpose(0, 1, 3, 2, 4, 5)
    return grid.reshape(n, resolution, resolution, 3)


def fit_codebook(
    pixels: np.ndarray[Any, Any],
    patch: int,
    size: int,
    seed: int = 0,
    max_vectors: int = 400_000,
) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A k-means codebook of `size` entries over the patches of `pixels` (N, H, W, 3), fitted
    on at most `max_vectors` of them (a seeded sample: k-means time grows with the count)."""
    from sklearn.cluster import MiniBatchKMeans

    vectors = to_patches(pixels, patch).reshape(-1, patch * patch * 3).astype(np.float32)
    if len(vectors) > max_vectors:
        picked = np.random.default_rng(seed).choice(len(vectors), max_vectors, replace=False)
        vectors = vectors[np.sort(picked)]
    distinct = np.unique(vectors, axis=0)
    if len(distinct) <= size:  # fewer distinct patches than entries: keep them all
        centres = distinct
    else:
        kmeans = MiniBatchKMeans(
            n_clusters=size, random_state=seed, batch_size=4096, n_init=1, max_iter=50
        )
        centres = kmeans.fit(vectors).cluster_centers_
    return np.clip(np.rint(centres), 0, 255).astype(np.uint8)


def nearest_codes(
    vectors: np.ndarray[Any, Any], codebook: np.ndarray[Any, Any]
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Index of the nearest codebook entry (squared Euclidean distance) for each vector."""
    book = codebook.astype(np.float32)
    flat = vectors.reshape(-1, book.shape[1]).astype(np.float32)
    codes = np.empty(len(flat), dtype=np.int64)
    book_norms = (book * book).sum(axis=1)
    for start in range(0, len(flat), 8192):  # bounded memory: 8192 x codebook distances
        chunk = flat[start : start + 8192]
        distances = book_norms[None, :] - 2.0 * chunk @ book.T
        codes[start : start + len(chunk)] = distances.argmin(axis=1)
    return codes.reshape(vectors.shape[:-1])


def caption_text(caption: str, style: str | None) -> str:
    """What the model reads: the style first (when there is one), then the caption."""
    caption = " ".join(caption.lower().split())
    return f"{style.lower()}: {caption}" if style else caption


class ImageTokenizer(Tokenizer):
    kind: ClassVar[str] = "image"

    def __init__(
        self,
        text: Tokenizer,
        codebook: np.ndarray[Any, Any],
        *,
        resolution: int,
        patch: int,
        caption_length: int,
        styles: Sequence[str] = (),
    ) -> None:
        if resolution % patch:
            raise ValueError(f"resolution {resolution} is not a multiple of patch {patch}")
        if codebook.ndim != 2 or codebook.shape[1] != patch * patch * 3:
            raise ValueError(f"codebook shape {codebook.shape} does not fit {patch}x{patch} RGB")
        self.text = text
        self.codebook = np.ascontiguousarray(codebook, dtype=np.uint8)
        self.resolution = resolution
        self.patch = patch
        self.caption_length = caption_length
        self.styles = list(styles)
        self.pad_id = text.vocab_size
        self.image_id = text.vocab_size + 1
        self.first_code = text.vocab_size + 2

    # ------------------------------------------------------------------ sizes

    @property
    def codebook_size(self) -> int:
        return int(self.codebook.shape[0])

    @property
    def grid(self) -> int:
        """Patches per side: a picture is grid x grid tokens."""
        return self.resolution // self.patch

    @property
    def image_length(self) -> int:
        return self.grid * self.grid

    @property
    def prompt_length(self) -> int:
        """Caption tokens (padded) plus `<image>`."""
        return self.caption_length + 1

    @property
    def record_length(self) -> int:
        return self.prompt_length + self.image_length

    @property
    def vocab_size(self) -> int:
        return self.first_code + self.codebook_size

    @property
    def eot_id(self) -> int:
        return self.text.eot_id

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset({self.eot_id, self.pad_id, self.image_id})

    # ------------------------------------------------------------------ text

    def encode(self, text: str) -> list[int]:
        return self.text.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.text.decode([i for i in ids if i < self.text.vocab_size])

    def token_bytes(self, token_id: int) -> bytes:
        return self.text.token_bytes(token_id) if token_id < self.text.vocab_size else b""

    def prompt_ids(self, caption: str, style: str | None = None) -> list[int]:
        """The caption's tokens (cut or padded to `caption_length`), then `<image>`."""
        ids = (
            self.text.encode(caption_text(caption, style))[: self.caption_length] if caption else []
        )
        return ids + [self.pad_id] * (self.caption_length - len(ids)) + [self.image_id]

    # ------------------------------------------------------------------ pictures

    def pixels(self, image: Image.Image) -> np.ndarray[Any, np.dtype[np.uint8]]:
        return to_rgb_array(image, self.resolution)

    def encode_pixels(self, pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
        """(N, res, res, 3) pixels -> (N, grid*grid) token ids."""
        return nearest_codes(to_patches(pixels, self.patch), self.codebook) + self.first_code

    def encode_image(self, image: Image.Image) -> list[int]:
        return [int(i) for i in self.encode_pixels(self.pixels(image)[None])[0]]

    def decode_pixels(self, ids: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint8]]:
        """(N, grid*grid) token ids -> (N, res, res, 3) pixels."""
        codes = np.asarray(ids, dtype=np.int64) - self.first_code
        if codes.min(initial=0) < 0 or codes.max(initial=0) >= self.codebook_size:
            raise ValueError("image token ids out of the codebook's range")
        return from_patches(self.codebook[codes], self.resolution, self.patch)

    def decode_image(self, ids: Sequence[int]) -> Image.Image:
        return Image.fromarray(self.decode_pixels(np.asarray(ids)[None])[0], "RGB")

    # ------------------------------------------------------------------ building, saving

    @classmethod
    def train(
        cls,
        captions: Iterable[str],
        pixels: np.ndarray[Any, Any],
        *,
        resolution: int,
        patch: int,
        codebook_size: int,
        text_vocab_size: int,
        caption_length: int,
        styles: Sequence[str] = (),
        seed: int = 0,
    ) -> ImageTokenizer:
        """A caption BPE over `captions` and a codebook over `pixels` (N, res, res, 3)."""
        from musegpt.tokenizer.bpe import BPETokenizer

        text = BPETokenizer.train(captions, vocab_size=text_vocab_size)
        codebook = fit_codebook(pixels, patch, codebook_size, seed)
        return cls(
            text,
            codebook,
            resolution=resolution,
            patch=patch,
            caption_length=caption_length,
            styles=sorted(set(styles)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text.to_dict(),
            "codebook": base64.b64encode(self.codebook.tobytes()).decode("ascii"),
            "codebook_size": self.codebook_size,
            "resolution": self.resolution,
            "patch": self.patch,
            "caption_length": self.caption_length,
            "styles": self.styles,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageTokenizer:
        patch = int(data["patch"])
        raw = np.frombuffer(base64.b64decode(data["codebook"]), dtype=np.uint8)
        return cls(
            tokenizer_from_json(json.dumps(data["text"])),
            raw.reshape(int(data["codebook_size"]), patch * patch * 3),
            resolution=int(data["resolution"]),
            patch=patch,
            caption_length=int(data["caption_length"]),
            styles=list(data.get("styles", [])),
        )

    def __repr__(self) -> str:
        return (
            f"ImageTokenizer({self.resolution}px, {self.patch}x{self.patch} patches, "
            f"{self.codebook_size} codes, {self.text.vocab_size} text tokens)"
        )
