"""The originality guard: a drawn picture that is a near-copy of a training picture is redrawn.

A near-copy is the evaluation's: at least `NEAR_COPY_SHARE` of its tokens equal to one
training picture's (same token at the same place), the training pictures
counted also mirrored left to right. The training split's token grids are
kept in the model file (codebook indices as uint16, zlib-compressed), so the check is one
comparison of a drawn grid with every training grid: well under a millisecond a picture.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np

GRIDS_KEY = "image_train_grids"  # model-file metadata: the training split's token grids
NEAR_COPY_SHARE = 0.9
GUARD_TRIES = 4  # redraws of a near-copy; the last cannot end as one
GUARD_SAME_HEAT = 0  # redraws at the request's own temperature before each is hotter
GUARD_HEAT_STEP = 0.25  # each later redraw's temperature: x (1 + step x tries past those)
ROWS_AT_ONCE = 512  # training grids compared at a time: bounded memory


class TrainingGrids:
    """The training split's token grids (N, image_length) as codebook indices (uint16)."""

    def __init__(self, codes: np.ndarray[Any, Any]) -> None:
        if codes.ndim != 2:
            raise ValueError(f"training grids must be (pictures, tokens), got {codes.shape}")
        self.codes = np.ascontiguousarray(codes, dtype=np.uint16)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes)

    def to_metadata(self) -> str:
        rows, length = self.codes.shape
        packed = zlib.compress(self.codes.tobytes(), 9)
        return f"{rows}x{length}:" + base64.b64encode(packed).decode("ascii")

    @classmethod
    def from_metadata(cls, text: str) -> TrainingGrids:
        shape, _, data = text.partition(":")
        rows, _, length = shape.partition("x")
        raw = np.frombuffer(zlib.decompress(base64.b64decode(data)), dtype=np.uint16)
        return cls(raw.reshape(int(rows), int(length)))

    def copy_share(self, codes: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """For each grid of `codes` (n, image_length), the largest share of its tokens equal
        to one training grid's."""
        codes = np.asarray(codes, dtype=np.uint16)
        best = np.zeros(len(codes))
        for start in range(0, len(self.codes), ROWS_AT_ONCE):
            chunk = self.codes[start : start + ROWS_AT_ONCE]
            same = (codes[:, None, :] == chunk[None, :, :]).mean(axis=2)
            best = np.maximum(best, same.max(axis=1))
        return best

    def near_copies(self, codes: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """A boolean per grid of `codes`: is it a near-copy of a training picture?"""
        flags: np.ndarray[Any, Any] = self.copy_share(codes) >= NEAR_COPY_SHARE
        return flags
