"""Drawing: a GPT reads a caption's tokens and writes a picture's tokens (DALL-E 1's recipe).

`load_image_model("icons")` opens the packaged model (or any model file trained by
`musegpt.images.train`); `model.draw("a red apple", n=4, size=512, seed=1)` returns PIL
images. The n pictures are drawn as one batch on a key/value cache; only image tokens may be
chosen while drawing. With a model trained on some captionless records, `guidance` above 1
applies classifier-free guidance (each row is run with and without its caption and the
logits pushed away from the captionless ones). A model file that keeps a caption-picture
scorer (`scorer.py`, a tiny CLIP) draws, with `rerank` k above 1, k candidates for each
picture in the same batch and keeps the one the scorer finds most like the caption (DALL-E's
reranking). A model file may draw the first rows (the layout) cooler than the rest
(`image_layout_temperature_ratio`).

A model file that keeps its training split (`musegpt.images.memory`) also draws with caption
expansion (the request mapped to the nearest trained name or tags, `prompting.py`) when its
recipe found that it helps, and never hands back a near-copy of a training picture: one is
redrawn, a little hotter, with a seed derived from the request's (`originality.py`).
"""

from __future__ import annotations

import json
import math
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pydantic import ValidationError

from musegpt.generation.decoder import draw as draw_tokens
from musegpt.generation.decoder import torch_threads
from musegpt.generation.params import SamplingParams
from musegpt.generation.processors import (
    DecodeState,
    LogitsProcessor,
    apply_pipeline,
    build_pipeline,
)
from musegpt.images.originality import (
    GRIDS_KEY,
    GUARD_HEAT_STEP,
    GUARD_SAME_HEAT,
    GUARD_TRIES,
    NEAR_COPY_SHARE,
    TrainingGrids,
)
from musegpt.images.prompting import (
    CONCEPTS_KEY,
    EXPAND_KEY,
    ConceptVocabulary,
    ExpandMode,
    Expansion,
    expand_mode,
)
from musegpt.images.scorer import SCORER_KEY, CaptionPictureScorer, CaptionScorer
from musegpt.images.tokenizer import ImageTokenizer
from musegpt.model.gpt import GPT
from musegpt.model.io import ModelFileError, load_model, read_metadata

DEFAULT_IMAGE_MODEL = "icons"
IMAGE_SIZES = ("256x256", "512x512", "1024x1024")
MAX_IMAGES = 10  # pictures per call (OpenAI's limit for n)
MIN_SIZE, MAX_SIZE = 8, 2048
MAX_PROMPT_CHARS = 1000
# Model-file metadata: the sampling defaults its recipe measured best.
GUIDANCE_KEY = "image_guidance"
TEMPERATURE_KEY = "image_temperature"
TOP_K_KEY = "image_top_k"
RERANK_KEY = "image_rerank"
LAYOUT_KEY = "image_layout_temperature_ratio"
# The first rows of the grid set a picture's layout (where the thing sits, its outline);
# drawing them cooler than the rest measurably follows the caption better (docs/images.md).
# Measured with 8-row grids (2 rows); a 16-row grid keeps the same top quarter (4 rows).
LAYOUT_SHARE = 0.25


def layout_rows(grid: int) -> int:
    """How many of a grid's first rows are its layout: the top `LAYOUT_SHARE` of them."""
    return max(1, round(LAYOUT_SHARE * grid))


MAX_RERANK = 32  # candidates per picture: n x k pictures are drawn as one batch

Progress = Callable[[int, int], None]


class ImageRequestError(ValueError):
    """A drawing request that cannot be honoured (bad prompt, size, n, style, sampling)."""


class ImageModelError(ValueError):
    """A name or path that is not an image model."""


def parse_size(size: str | int) -> int:
    """256, "256" or "256x256" -> 256 (square pictures only)."""
    text = str(size).strip().lower()
    width, _, height = text.partition("x")
    if not width.isdigit() or (height and height != width):
        raise ImageRequestError(
            f"size {size!r} is not a square size; use one of {', '.join(IMAGE_SIZES)}"
        )
    value = int(width)
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise ImageRequestError(
            f"size must be between {MIN_SIZE} and {MAX_SIZE} pixels (got {value})"
        )
    return value


def upscale(image: Image.Image, size: int) -> Image.Image:
    """Pixel art stays crisp: nearest-neighbour to the largest whole multiple of the picture
    that fits, then Lanczos for the last fraction (none at 256/512/1024 from 32)."""
    whole = max(1, size // image.width) * image.width
    image = image.resize((whole, whole), Image.Resampling.NEAREST)
    if whole != size:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


class ImageTokensOnly:
    """A logits processor: while drawing, only codebook tokens may be chosen."""

    def __init__(self, first_code: int) -> None:
        self.first_code = first_code

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        scores[..., : self.first_code] = float("-inf")
        return scores


class CopyEscape:
    """Keeps drawn rows from ending as near-copies of training grids: for each row it counts
    the places where it differs from every grid so far, and when a grid could still end
    within the near-copy share only if every remaining place differs from it, that grid's
    token at the next place is banned. Only the last places of a would-be copy change."""

    def __init__(self, grids: TrainingGrids, rows: int, kept: list[int]) -> None:
        self.grids = grids.codes.astype(np.int64)
        length = self.grids.shape[1]
        # differences a picture needs with every grid not to be a near-copy of it
        self.needed = length - math.ceil(NEAR_COPY_SHARE * length - 1e-9) + 1
        prefix = np.asarray(kept, dtype=np.int64)
        differ = (self.grids[:, : len(prefix)] != prefix[None, :]).sum(axis=1)
        self.differences = np.repeat(differ[None, :], rows, axis=0)

    def ban(self, logits: torch.Tensor, place: int, first_code: int) -> torch.Tensor:
        remaining = self.grids.shape[1] - place
        rows, grids = np.nonzero(self.differences + remaining <= self.needed)
        if len(rows):
            logits = logits.clone()
            codes = torch.from_numpy(self.grids[grids, place] + first_code)
            logits[torch.from_numpy(rows), codes] = float("-inf")
        return logits

    def update(self, place: int, codes: torch.Tensor) -> None:
        self.differences += self.grids[None, :, place] != codes.numpy()[:, None]


class ImageModel:
    def __init__(
        self,
        gpt: GPT,
        tokenizer: ImageTokenizer,
        name: str,
        guidance: float = 1.0,
        temperature: float = 1.0,
        top_k: int = 0,
        rerank: int = 1,
        vocabulary: ConceptVocabulary | None = None,
        training_grids: TrainingGrids | None = None,
        expand: ExpandMode = "off",
        layout_temperature_ratio: float = 1.0,
        scorer: CaptionPictureScorer | None = None,
    ) -> None:
        self.gpt = gpt.eval()
        self.tokenizer = tokenizer
        self.name = name
        # Defaults for draw(): what the model's recipe found best (docs/images.md).
        self.guidance = guidance
        self.temperature = temperature
        self.top_k = top_k
        self.rerank = rerank
        self.expand = expand
        # the first `layout_rows` rows are drawn at this share of the temperature
        self.layout_temperature_ratio = layout_temperature_ratio
        self.vocabulary = vocabulary  # the training split's names and tags (None: not kept)
        self.training_grids = training_grids  # its token grids, for the originality guard
        # the caption-picture scorer reranking keeps the best candidates by (None: no reranking)
        self.scorer = CaptionScorer(scorer, tokenizer) if scorer is not None else None
        self._lock = threading.Lock()  # one drawing at a time per model (the server shares it)

    @property
    def styles(self) -> list[str]:
        return list(self.tokenizer.styles)

    def _check(
        self, prompt: str, n: int, style: str | None, guidance: float, rerank: int
    ) -> str | None:
        if not isinstance(prompt, str):
            raise ImageRequestError("prompt must be text, e.g. 'a red apple'")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ImageRequestError(
                f"prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are read"
            )
        if not 1 <= n <= MAX_IMAGES:
            raise ImageRequestError(f"n must be between 1 and {MAX_IMAGES} (got {n})")
        if not 0 < guidance <= 20:
            raise ImageRequestError(f"guidance must be above 0 and at most 20 (got {guidance})")
        if not 1 <= rerank <= MAX_RERANK:
            raise ImageRequestError(f"rerank must be between 1 and {MAX_RERANK} (got {rerank})")
        if rerank > 1 and self.scorer is None:
            raise ImageRequestError(
                f"rerank needs a caption-picture scorer and the image model {self.name!r} keeps "
                "none; draw with rerank 1, or train one with `musegpt train-scorer`"
            )
        if style is None or not style.strip():
            return None
        wanted = style.strip().lower()
        known = {s.lower(): s for s in self.tokenizer.styles}
        if wanted not in known:
            choices = ", ".join(self.tokenizer.styles) or "none (this model has no styles)"
            raise ImageRequestError(f"unknown style {style!r}; choose one of: {choices}")
        return known[wanted]

    def draw(
        self,
        prompt: str,
        *,
        n: int = 1,
        size: int | str = 256,
        seed: int | None = None,
        style: str | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        guidance: float | None = None,
        rerank: int | None = None,
        expand: bool | None = None,
        guard: bool = True,
        progress: Progress | None = None,
    ) -> list[Image.Image]:
        """`n` RGB pictures of `size` x `size` pixels for `prompt`. The same seed gives the same
        pictures. Without a style each picture (each candidate, when reranking) takes one of
        the model's styles at random.
        `temperature`, `top_k` (0: all tokens), `guidance` (1: off), `rerank` (candidates
        per picture, the best kept by the model's scorer; 1: off) and `expand` (caption
        expansion) default to the model's own; `guard=False` lets near-copies of training
        pictures through. Each image's `info` holds its prompt, the caption the model read,
        style, seed, model name, the sampling it was drawn with, its caption evidence in nats
        (with guidance), its scorer similarity (with a scorer) and its redraws (as strings)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ImageRequestError("prompt is empty; describe the picture, e.g. 'a red apple'")
        return self._draw(
            prompt, [], n, size, seed, style, temperature, top_k, guidance, rerank, progress,
            expand, guard,
        )  # fmt: skip

    def vary(
        self,
        image: Image.Image,
        *,
        n: int = 1,
        size: int | str = 256,
        seed: int | None = None,
        keep: float = 0.5,
        prompt: str = "",
        style: str | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        guidance: float | None = None,
        rerank: int | None = None,
        expand: bool | None = None,
        guard: bool = True,
        progress: Progress | None = None,
    ) -> list[Image.Image]:
        """`n` variations of `image`: the top `keep` share of its token grid's rows (at least
        one row, never all) is kept and the model redraws the rest. Without a `prompt` the
        rest is drawn captionless (no guidance, no reranking: there is no caption to favour);
        with one, as `draw` would. Other arguments as `draw`'s."""
        if not 0 < keep < 1:
            raise ImageRequestError(f"keep must be above 0 and below 1 (got {keep})")
        grid = self.tokenizer.grid
        rows = min(grid - 1, max(1, round(keep * grid)))
        kept = self.tokenizer.encode_image(image)[: rows * grid]
        if not prompt.strip():
            prompt, guidance, rerank = "", 1.0, 1
        return self._draw(
            prompt, kept, n, size, seed, style, temperature, top_k, guidance, rerank, progress,
            expand, guard,
        )  # fmt: skip

    def expansion_mode(self, expand: bool | None = None) -> ExpandMode:
        """The expansion `expand` asks for: None the model's own (off when the file keeps no
        vocabulary), True the model's own or else names, False none."""
        if expand is None:
            return self.expand if self.vocabulary is not None else "off"
        return (self.expand if self.expand != "off" else "name") if expand else "off"

    def expansion(self, prompt: str, expand: bool | None = None) -> Expansion:
        """What the model reads for `prompt`: with expansion (`expand`, default the model's
        own) the nearest trained name or tags, else the prompt as written."""
        mode = self.expansion_mode(expand)
        if mode == "off" or not prompt.strip():
            return Expansion(prompt, None, 0.0)
        if self.vocabulary is None:
            raise ImageRequestError(
                f"the image model {self.name!r} keeps no training vocabulary to expand "
                "captions with; draw without expansion, or store it with "
                "musegpt.images.memory.remember_training_split(model_file, corpus_folder)"
            )
        return self.vocabulary.expand(prompt, mode)

    def _draw(
        self,
        prompt: str,
        kept: list[int],
        n: int,
        size: int | str,
        seed: int | None,
        style: str | None,
        temperature: float | None,
        top_k: int | None,
        guidance: float | None,
        rerank: int | None,
        progress: Progress | None,
        expand: bool | None = None,
        guard: bool = True,
    ) -> list[Image.Image]:
        """Pictures that begin with the image tokens `kept` (none: a whole new picture)."""
        pixels = parse_size(size)
        scale = self.guidance if guidance is None else guidance
        candidates = self.rerank if rerank is None else rerank
        chosen_style = self._check(prompt, n, style, scale, candidates)
        read = self.expansion(prompt, expand)
        try:
            params = SamplingParams(
                temperature=self.temperature if temperature is None else temperature,
                top_k=self.top_k if top_k is None else top_k,
                seed=seed if seed is not None else random.randrange(2**31),
                n=n,
            )
        except ValidationError as err:
            problem = err.errors()[0]
            field = "top_k" if problem["loc"] == ("top_k",) else str(problem["loc"][0])
            bound = problem["msg"].replace("Input should be", "must be")
            raise ImageRequestError(f"{field} {bound} (got {problem['input']})") from None
        assert params.seed is not None
        rng = random.Random(params.seed)
        # Without a style each candidate takes one at random, so reranking also chooses
        # the style that shows the caption best (with k = 1: one style a picture, as before).
        styles = [
            chosen_style or (rng.choice(self.styles) if self.styles else None)
            for _ in range(n * candidates)
        ]
        # One thread: a step is a few small matmuls, and a second thread only waits on the
        # first (4 pictures: 0.3 s on one thread, 19.5 s on two, on the busy 2-core machine).
        with self._lock, torch.inference_mode(), torch_threads(1):
            ids, evidence, best = self._sample(
                read.caption, styles, params, scale, candidates, kept, progress
            )
            chosen = [styles[i] for i in best.tolist()]  # the kept candidates' styles
            redraws = self._guard(ids, evidence, read.caption, styles, chosen, params, scale,
                                  candidates, kept) if guard else [0] * n  # fmt: skip
        grids = self.tokenizer.decode_pixels(ids.numpy())
        scores = self._scores(read.caption, grids)
        images = []
        for row, grid in enumerate(grids):
            image = upscale(Image.fromarray(np.ascontiguousarray(grid), "RGB"), pixels)
            image.info.update(
                {
                    "prompt": prompt,
                    "caption": read.caption,  # what the model read (after expansion)
                    "style": chosen[row] or "",
                    "seed": str(params.seed),
                    "index": str(row),
                    "model": self.name,
                    # What was used, the model's defaults included, for provenance.
                    "temperature": str(params.temperature),
                    "layout_temperature_ratio": str(self.layout_temperature_ratio),
                    "top_k": str(params.top_k),
                    "guidance": str(scale),
                    "rerank": str(candidates),
                    "evidence": f"{float(evidence[row]):.2f}",
                    "score": f"{float(scores[row]):.3f}" if scores is not None else "",
                    "kept_tokens": str(len(kept)),
                    "redraws": str(redraws[row]),
                }
            )
            images.append(image)
        return images

    def _scores(self, caption: str, pixels: np.ndarray[Any, Any]) -> torch.Tensor | None:
        """The scorer's similarity of each picture with `caption` (None: no scorer, or no
        caption to score against)."""
        if self.scorer is None or not caption.strip():
            return None
        return self.scorer.similarity(caption, pixels)

    def _guard(
        self,
        ids: torch.Tensor,
        evidence: torch.Tensor,
        caption: str,
        styles: list[str | None],
        chosen: list[str | None],
        params: SamplingParams,
        guidance: float,
        rerank: int,
        kept: list[int],
    ) -> list[int]:
        """Redraw, in place, the pictures of `ids` (and their `chosen` styles, from the
        candidates' `styles`) that are near-copies of a training picture:
        at most GUARD_TRIES times, each with a seed derived from the request's and a higher
        temperature (a copy is what the likeliest tokens spell); the last try also bans, at
        each place, the token that would leave a training grid close enough to end as a copy
        (`CopyEscape`), so it cannot fail. Returns each picture's redraws."""
        redraws = [0] * len(chosen)
        if self.training_grids is None:
            return redraws
        first = self.tokenizer.first_code
        for attempt in range(1, GUARD_TRIES + 1):
            copies = np.flatnonzero(self.training_grids.near_copies(ids.numpy() - first))
            if not len(copies):
                return redraws
            warmer = max(0, attempt - GUARD_SAME_HEAT)  # tries at the same heat first
            hotter = min(2.0, (params.temperature or 0.5) * (1 + GUARD_HEAT_STEP * warmer))
            retry = params.model_copy(
                update={
                    "seed": (int(params.seed or 0) * 1_000_003 + attempt) % 2**31,
                    "n": len(copies),
                    "temperature": hotter,
                }
            )
            last = attempt == GUARD_TRIES  # the last try cannot end in a copy
            again_styles = [styles[i * rerank + j] for i in copies for j in range(rerank)]
            again, again_evidence, best = self._sample(
                caption, again_styles, retry, guidance, rerank, kept, None,
                self.training_grids if last else None,
            )  # fmt: skip
            rows = torch.from_numpy(copies)
            ids[rows], evidence[rows] = again, again_evidence
            for i, pick in zip(copies, best.tolist(), strict=True):
                redraws[i] += 1
                chosen[i] = again_styles[pick]
        return redraws

    def _sample(
        self,
        prompt: str,
        styles: list[str | None],
        params: SamplingParams,
        guidance: float,
        rerank: int,
        kept: list[int],
        progress: Progress | None,
        avoid: TrainingGrids | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For n pictures of `rerank` candidates each (`styles`: one per candidate, picture
        by picture): (n, image_length) image token ids, the first ones `kept`, each
        picture's caption evidence (n,) and which candidate was kept (n,), the scorer's best
        of its `rerank` when `rerank` > 1. With `avoid`, no picture can end as a near-copy of
        one of its grids."""
        tok = self.tokenizer
        m = len(styles)  # every candidate of every picture
        rows = [tok.prompt_ids(prompt, style) + kept for style in styles]
        # Captionless rows: for guidance (and the caption evidence read off them).
        paired = guidance != 1.0
        if paired:
            rows += [tok.prompt_ids("") + kept] * m
        prompt_ids = torch.tensor(rows, dtype=torch.long)
        total = tok.image_length - len(kept)
        cache = self.gpt.new_cache(len(rows), tok.record_length)

        def pipeline(sampling: SamplingParams) -> list[LogitsProcessor]:
            only = [ImageTokensOnly(tok.first_code)]
            return build_pipeline(sampling, tok.vocab_size, None, constraints=only)

        steps = layout = pipeline(params)
        layout_steps = max(0, layout_rows(tok.grid) * tok.grid - len(kept))
        if self.layout_temperature_ratio != 1.0 and not params.greedy and layout_steps:
            ratio = self.layout_temperature_ratio
            layout = pipeline(params.model_copy(update={"temperature": params.temperature * ratio}))
        state = DecodeState([r[:] for r in rows[:m]], [len(rows[0])] * m)
        generator = torch.Generator().manual_seed(params.seed or 0)
        out = torch.empty(m, tok.image_length, dtype=torch.long)
        out[:, : len(kept)] = torch.tensor(kept, dtype=torch.long)
        evidence = torch.zeros(m)
        escape = CopyEscape(avoid, m, [k - tok.first_code for k in kept]) if avoid else None
        logits = self.gpt(prompt_ids, cache=cache, last_only=True).logits[:, -1, :].float()
        for step in range(total):
            if paired:
                # each row's own distribution over the codebook (for the evidence)
                log_probs = torch.log_softmax(logits[:, tok.first_code :], dim=-1)
                logits = logits[m:] + guidance * (logits[:m] - logits[m:])
            if escape is not None:
                logits = escape.ban(logits, len(kept) + step, tok.first_code)
            scores = apply_pipeline(layout if step < layout_steps else steps, state, logits)
            if params.greedy:
                chosen = scores.argmax(dim=-1)
            else:
                chosen = draw_tokens(torch.softmax(scores, dim=-1), generator)
            out[:, len(kept) + step] = chosen
            if escape is not None:
                escape.update(len(kept) + step, chosen - tok.first_code)
            if paired:
                codes = torch.cat([chosen, chosen])[:, None] - tok.first_code
                picked = log_probs.gather(1, codes)[:, 0]
                evidence += picked[:m] - picked[m:]
            if steps and any(not isinstance(s, ImageTokensOnly) for s in steps):
                for row, token in zip(state.sequences, chosen.tolist(), strict=True):
                    row.append(token)
            if progress is not None:
                progress(step + 1, total)
            if step + 1 < total:
                feed = torch.cat([chosen, chosen]) if paired else chosen
                logits = self.gpt(feed[:, None], cache=cache, last_only=True).logits[:, -1, :]
                logits = logits.float()
        similarity = self._scores(prompt, tok.decode_pixels(out.numpy())) if rerank > 1 else None
        if similarity is None:
            return out, evidence, torch.arange(m)
        best = similarity.view(-1, rerank).argmax(dim=1) + torch.arange(m // rerank) * rerank
        return out[best], evidence[best], best


def is_image_model(name_or_path: str | Path) -> bool:
    """Whether a model name or path is an image model (its file holds an image tokenizer)."""
    try:
        meta = read_metadata(image_model_path(name_or_path))
        kind = json.loads(meta.get("tokenizer", "{}")).get("kind")
    except (ImageModelError, ModelFileError, ValueError, OSError, AttributeError):
        return False
    return bool(kind == ImageTokenizer.kind)


def image_model_path(name_or_path: str | Path) -> Path:
    """The model file for a packaged/registered name or a path."""
    from musegpt.engines.base import EngineError
    from musegpt.engines.registry import find_model

    try:
        entry = find_model(str(name_or_path))
    except EngineError as err:
        if str(name_or_path) == DEFAULT_IMAGE_MODEL:
            raise ImageModelError(
                f"the packaged image model {DEFAULT_IMAGE_MODEL!r} is missing from this "
                "install; train one with `musegpt prepare icons --out corpora/icons && "
                "musegpt train-images corpora/icons --config configs/icons.yaml --out "
                "runs/icons` and pass --model runs/icons/best"
            ) from None
        raise ImageModelError(str(err)) from None
    if not entry.path or entry.backend != "musegpt":
        raise ImageModelError(
            f"{name_or_path!r} is a text model ({entry.backend}), not an image model; "
            f"the packaged image model is {DEFAULT_IMAGE_MODEL!r}"
        )
    return Path(entry.path)


def load_image_model(name_or_path: str | Path = DEFAULT_IMAGE_MODEL) -> ImageModel:
    """An image model by name ("icons", a registered name) or by path to its model file."""
    path = image_model_path(name_or_path)
    try:
        gpt, tokenizer = load_model(path)
        meta = read_metadata(path)
    except ModelFileError as err:
        raise ImageModelError(str(err)) from None
    if not isinstance(tokenizer, ImageTokenizer):
        raise ImageModelError(
            f"{name_or_path} is a text model, not an image model (its tokenizer is "
            f"{tokenizer.kind!r}); train one with `musegpt train-images`"
        )
    return ImageModel(
        gpt,
        tokenizer,
        model_name(name_or_path, path),
        guidance=float(meta.get(GUIDANCE_KEY, "1.0")),
        temperature=float(meta.get(TEMPERATURE_KEY, "1.0")),
        top_k=int(meta.get(TOP_K_KEY, "0")),
        rerank=int(meta.get(RERANK_KEY, "1")),
        vocabulary=(
            ConceptVocabulary.from_metadata(meta[CONCEPTS_KEY]) if CONCEPTS_KEY in meta else None
        ),
        training_grids=(
            TrainingGrids.from_metadata(meta[GRIDS_KEY]) if GRIDS_KEY in meta else None
        ),
        expand=expand_mode(meta.get(EXPAND_KEY, "off")),
        layout_temperature_ratio=float(meta.get(LAYOUT_KEY, "1.0")),
        scorer=(
            CaptionPictureScorer.from_metadata(meta[SCORER_KEY]) if SCORER_KEY in meta else None
        ),
    )


def model_name(name_or_path: str | Path, path: Path) -> str:
    """A name as given, or for a path the file's stem (a run's folder for best/, last/)."""
    if not Path(name_or_path).expanduser().exists():
        return str(name_or_path)
    file = path / "model.safetensors" if path.is_dir() else path
    if file.stem != "model":
        return file.stem
    folder = file.parent
    return folder.parent.name if folder.name in ("best", "last") else folder.name
