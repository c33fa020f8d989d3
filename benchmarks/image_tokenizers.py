"""Image tokenizer choice: reconstruction error against sequence length.

    python benchmarks/image_tokenizers.py [PICTURE_FOLDER] [--fit 2000]

Codebooks (k-means; a palette is a codebook of 1x1 patches) are fitted on up to --fit
training pictures and measured on the validation split: RMSE (0-255 scale) and PSNR
against the 64x64 source, the reconstruction upscaled to 64x64 by nearest neighbour.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from musegpt.images.tokenizer import fit_codebook, from_patches, nearest_codes, to_patches
from musegpt.images.train import load_pixels, read_pictures

OPTIONS = [  # (name, resolution, patch, codebook size)
    ("palette 16x16, 256 colours", 16, 1, 256),
    ("palette 32x32, 256 colours", 32, 1, 256),
    ("patch VQ 32x32, 2x2 patches, 1024 codes", 32, 2, 1024),
    ("patch VQ 64x64, 4x4 patches, 1024 codes", 64, 4, 1024),
    ("patch VQ 32x32, 4x4 patches, 1024 codes", 32, 4, 1024),
]


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def upscale(pixels: np.ndarray, to: int) -> np.ndarray:
    factor = to // pixels.shape[1]
    return pixels.repeat(factor, axis=1).repeat(factor, axis=2)


def main() -> None:
    from musegpt.images.corpus import icons_corpus  # the icons corpus by default

    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--fit", type=int, default=2000)
    args = parser.parse_args()
    folder = args.folder or icons_corpus()
    pictures = read_pictures(folder)
    rng = np.random.default_rng(0)
    train = [p for p in pictures if p.split == "train"]
    fit = [
        train[i] for i in sorted(rng.choice(len(train), min(args.fit, len(train)), replace=False))
    ]
    val = [p for p in pictures if p.split == "val"]
    source = load_pixels(val, 64)
    print(f"{len(fit)} pictures to fit, {len(val)} validation pictures, source 64x64\n")
    print("| tokenizer | tokens per picture | RMSE | PSNR (dB) | fit (s) |")
    print("|---|---:|---:|---:|---:|")
    for resolution in (16, 32):
        small = load_pixels(val, resolution)
        err = rmse(upscale(small, 64), source)
        print(
            f"| no quantisation, {resolution}x{resolution} | - | {err:.1f} | "
            f"{20 * math.log10(255 / err):.1f} | - |"
        )
    for name, resolution, patch, size in OPTIONS:
        start = time.perf_counter()
        codebook = fit_codebook(load_pixels(fit, resolution), patch, size)
        seconds = time.perf_counter() - start
        pixels = load_pixels(val, resolution)
        codes = nearest_codes(to_patches(pixels, patch), codebook)
        back = from_patches(codebook[codes], resolution, patch)
        err = rmse(upscale(back, 64), source)
        tokens = (resolution // patch) ** 2
        print(
            f"| {name} | {tokens} | {err:.1f} | {20 * math.log10(255 / err):.1f} | {seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
