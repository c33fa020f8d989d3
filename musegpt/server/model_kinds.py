"""What a served model makes, so a client offers it in the right menu: `text`, `music` (ABC
tunes) or `image` (pictures, drawn by the images API).

A MuseGPT model's kind is read from what it has learned, not from its name: a model trained
on ABC tunes finds a tune far more likely than prose, and a text model the other way round.
The test is one forward pass over each of three short texts (a tune, English and Chinese
prose), made once when the model is loaded (0.05 s on abc-folk). Every other backend
(GGUF, Hugging Face, a remote server) serves text: the music grammar only runs on
MuseGPT models.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from musegpt.engines.base import Engine
from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.generation.decoder import torch_threads

ModelKind = Literal["text", "music", "image"]

TUNE = "X:1\nT:The Kesh\nM:6/8\nL:1/8\nK:G\n|:GAG GAB|ABA ABd|edd gdd|edB dBA:|\n"
PROSE = (
    "The rain had not stopped for three days when she opened the letter.\n",
    "雨已经下了三天，她终于打开了那封信。\n",
)
# A tune must cost well under the cheaper prose per byte: an untrained model, near-uniform
# over its vocabulary, scores them alike and is a text model.
MUSIC_RATIO = 0.75


def model_kind(engine: Engine) -> ModelKind:
    """`music` for a MuseGPT model that has learned ABC notation, else `text`."""
    if not isinstance(engine, MuseGPTEngine):
        return "text"
    with torch_threads(1):  # three short texts: more threads only wait for each other
        tune, *prose = bits_per_byte(engine, [TUNE, *PROSE])
    return "music" if tune < MUSIC_RATIO * min(prose) else "text"


@torch.inference_mode()
def bits_per_byte(engine: MuseGPTEngine, texts: list[str]) -> list[float]:
    """The model's cost of each text (cut to its context window), in bits per UTF-8 byte."""
    costs = []
    device = engine.model.wte.weight.device
    for text in texts:
        ids = engine.tokenize(text)[: engine.context_length]
        if len(ids) < 2:
            costs.append(float("inf"))
            continue
        batch = torch.tensor([ids], dtype=torch.long, device=device)
        logits = engine.model(batch).logits[0, :-1].float()
        nats = torch.nn.functional.cross_entropy(logits, batch[0, 1:], reduction="sum")
        scored = len(engine.detokenize(ids[1:]).encode("utf-8"))
        costs.append(float(nats) / max(scored, 1) / math.log(2))
    return costs
