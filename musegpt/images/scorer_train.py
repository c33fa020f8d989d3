"""Training the caption-picture scorer (`musegpt train-scorer`, `scorer.py`) on a picture
folder's training split, and measuring it by caption -> picture retrieval on its validation
split.

    musegpt train-scorer ~/.cache/musegpt/images/icons-64 --config configs/icons-scorer.yaml \
        --out runs/icons-scorer --model musegpt/weights/icons.safetensors
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from musegpt.fileio import atomic_write
from musegpt.generation.decoder import torch_threads
from musegpt.images.scorer import (
    CaptionPictureScorer,
    CaptionScorer,
    ScorerConfig,
    caption_ids,
)
from musegpt.images.tokenizer import ImageTokenizer
from musegpt.images.train import Picture, load_pixels, mirrorable, read_pictures, tag_captions

CHECKPOINT = "scorer-last.pt"
# Chinese numerals with a measure word, the way a request names one thing (一个红苹果)
MEASURE_WORDS = ("一个", "一只", "一张", "一块", "一杯", "一朵", "一颗", "一辆", "一座", "一部")


def paraphrases(picture: Picture, rng: random.Random) -> list[str]:
    """A picture's name the way a request says it: with an article, or a numeral and a
    measure word ("a red apple", "一个红苹果")."""
    out = []
    for caption in picture.captions:
        if any("\u3400" <= ch <= "\u9fff" for ch in caption):
            out.append(rng.choice(MEASURE_WORDS) + caption)
        elif caption.split()[0].lower() not in ("a", "an", "the"):
            article = "an" if caption[:1].lower() in "aeiou" else "a"
            out.append(f"{rng.choice((article, 'the'))} {caption}")
    return out


def concept_key(picture: Picture) -> str:
    """The emoji a picture shows, whichever set drew it."""
    return picture.id.split("-", 1)[-1] if picture.id else str(picture.path.name)


def round_trip(tokenizer: ImageTokenizer, pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Pictures as the image tokenizer gives them back (what the GPT draws looks like this)."""
    out = np.empty_like(pixels)
    for start in range(0, len(pixels), 1024):
        chunk = pixels[start : start + 1024]
        out[start : start + 1024] = tokenizer.decode_pixels(tokenizer.encode_pixels(chunk))
    return out


def shifted(pixels: np.ndarray[Any, Any], dx: int, dy: int) -> np.ndarray[Any, Any]:
    """One picture moved by (dx, dy) pixels, the uncovered edge white."""
    out = np.full_like(pixels, 255)
    size = pixels.shape[0]
    out[max(0, dy) : size + min(0, dy), max(0, dx) : size + min(0, dx)] = pixels[
        max(0, -dy) : size + min(0, -dy), max(0, -dx) : size + min(0, -dx)
    ]
    return out


@dataclass
class TrainingSet:
    """Pictures (variants, pictures, res, res, 3), each picture's captions as token ids, and
    the pictures of each emoji."""

    pixels: np.ndarray[Any, Any]
    captions: list[list[list[int]]]
    concepts: list[list[int]]


def training_set(
    tokenizer: ImageTokenizer,
    pictures: Sequence[Picture],
    config: ScorerConfig,
    say: Callable[[str], None] = lambda m: None,
) -> TrainingSet:
    rng = random.Random(config.seed)
    raw = load_pixels(pictures, tokenizer.resolution)
    variants = np.empty((config.variants, *raw.shape), dtype=np.uint8)
    for v in range(config.variants):
        batch = raw.copy()
        if v:  # the first variant is the picture itself
            for i, picture in enumerate(pictures):
                image = raw[i, :, ::-1] if mirrorable(picture) and rng.random() < 0.5 else raw[i]
                dx, dy = (rng.randint(-config.max_shift, config.max_shift) for _ in range(2))
                batch[i] = shifted(image, dx, dy)
        variants[v] = round_trip(tokenizer, batch)
        say(f"tokenized picture variant {v + 1}/{config.variants}")
    captions = []
    for picture in pictures:
        texts = [*picture.captions, *tag_captions(picture), *paraphrases(picture, rng)]
        captions.append(
            [caption_ids(tokenizer, t, config.caption_length) for t in dict.fromkeys(texts)]
        )
    groups: dict[str, list[int]] = {}
    for i, picture in enumerate(pictures):
        if captions[i]:
            groups.setdefault(concept_key(picture), []).append(i)
    return TrainingSet(variants, captions, list(groups.values()))


@dataclass
class Retrieval:
    """Caption -> picture retrieval among `candidates` validation pictures (one per emoji)."""

    candidates: int
    top1: float
    top5: float
    top1_en: float
    top1_zh: float


def retrieval(scorer: CaptionScorer, corpus: str | Path, limit: int = 0) -> Retrieval | None:
    """For each validation emoji (its first picture, through the tokenizer), does its
    English (and Chinese) name rank its own picture first (top-1) or among the first five,
    of all validation emoji's pictures (or the first `limit`)? None without a validation
    split of captioned pictures."""
    seen: dict[str, Picture] = {}
    for picture in read_pictures(corpus):
        if picture.split == "val" and len(picture.captions) == 2:
            seen.setdefault(concept_key(picture), picture)
    chosen = list(seen.values())[: limit or None]
    if len(chosen) < 2:
        return None
    pixels = round_trip(scorer.tokenizer, load_pixels(chosen, scorer.tokenizer.resolution))
    ranks = {}
    for lang in (0, 1):
        sims = scorer.matrix([p.captions[lang] for p in chosen], pixels)
        own = sims.diagonal()[:, None]
        ranks[lang] = (sims > own).sum(dim=1)  # pictures scored above its own
    both = torch.cat([ranks[0], ranks[1]])
    return Retrieval(
        len(chosen),
        float((both == 0).float().mean()),
        float((both < 5).float().mean()),
        float((ranks[0] == 0).float().mean()),
        float((ranks[1] == 0).float().mean()),
    )


def train_scorer(
    corpus: str | Path,
    tokenizer: ImageTokenizer,
    config: ScorerConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    say: Callable[[str], None] = lambda m: None,
) -> CaptionScorer:
    """Train a scorer on the training split of the picture folder `corpus`, checkpointing to
    `out_dir` every `checkpoint_every` steps (`resume` continues from there)."""
    with torch_threads(1):  # small steps: a second thread only waits (as for the GPT)
        return _train(corpus, tokenizer, config, Path(out_dir).expanduser(), resume, say)


def _train(
    corpus: str | Path,
    tokenizer: ImageTokenizer,
    config: ScorerConfig,
    out: Path,
    resume: bool,
    say: Callable[[str], None],
) -> CaptionScorer:
    out.mkdir(parents=True, exist_ok=True)
    train = [p for p in read_pictures(corpus) if p.split == "train" and p.captions]
    if len(train) < 2:
        raise ValueError(f"{corpus} needs at least two captioned pictures in its train split")
    torch.manual_seed(config.seed)
    model = CaptionPictureScorer(config, tokenizer.text.vocab_size, tokenizer.resolution)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "position" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "position" not in n)]
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": rest},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=0.0)
    step = 0
    rng = random.Random(config.seed)
    checkpoint = out / CHECKPOINT
    if resume and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        step = int(saved["step"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        say(f"resuming at step {step}")
    data = training_set(tokenizer, train, config, say)
    batch = min(config.batch_size, len(data.concepts))
    log = (out / "scorer-log.jsonl").open("a", encoding="utf-8")
    start, cpu = time.perf_counter(), time.process_time()
    model.train()
    while step < config.steps:
        lr = _learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        concepts = rng.sample(data.concepts, batch)
        pictures = [rng.choice(c) for c in concepts]
        variant = [rng.randrange(config.variants) for _ in pictures]
        pixels = torch.from_numpy(data.pixels[variant, pictures])
        ids = torch.tensor([rng.choice(data.captions[p]) for p in pictures], dtype=torch.long)
        logits = model.logits(ids, pixels)
        target = torch.arange(batch)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 50 == 0 or step == config.steps:
            row = {"step": step, "loss": round(loss.item(), 4), "lr": lr,
                   "wall_s": round(time.perf_counter() - start, 1),
                   "cpu_s": round(time.process_time() - cpu, 1)}  # fmt: skip
            log.write(json.dumps(row) + "\n")
            log.flush()
            say(f"step {step}: loss {loss.item():.3f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(),
            }
            # Written beside and renamed over: a run killed mid-save keeps its last checkpoint.
            atomic_write(checkpoint, partial(torch.save, state))
    log.close()
    return CaptionScorer(model.eval(), tokenizer)


def _learning_rate(config: ScorerConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return float(config.learning_rate * (0.1 + 0.45 * (1 + np.cos(np.pi * min(1.0, progress)))))
