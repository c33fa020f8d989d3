"""Writing tunes: a request becomes a header, the header is the prompt, and the model writes
the body, constrained (valid ABC, full bars, a proper ending) unless asked otherwise."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from math import ceil
from typing import Any

from musegpt.engines.base import Engine
from musegpt.generation.decoder import Completion
from musegpt.generation.params import SamplingParams
from musegpt.music.abc import Header, header_for
from musegpt.music.constraint import AbcConstraint
from musegpt.music.tune import Tune

MUSIC_MODEL = "abc-folk"  # the packaged model (musegpt/weights/abc-folk.safetensors)
UNCONSTRAINED_STOPS = ["\nX:", "\n\n"]  # where an unconstrained tune runs into the next
_BAR_LINE = re.compile(r":?\|[\]:|]?|::")  # one bar line, repeats and double bars included


def music_engine(model: str | None = None) -> Engine:
    """The model that writes tunes: `model` (a name or path), else the packaged ABC model."""
    from musegpt.engines.base import EngineError
    from musegpt.engines.registry import open_engine

    try:
        return open_engine(model or MUSIC_MODEL)
    except EngineError as err:
        if model is not None:
            raise
        raise EngineError(
            f"the packaged music model is missing ({err}); train one with "
            "`musegpt prepare abc-folk --tokenizer char --out data/abc-folk && musegpt train "
            "--config configs/abc-folk.yaml --data data/abc-folk --out runs/abc-folk` and "
            "pass --model runs/abc-folk/best"
        ) from err


def max_new_tokens(header: Header, bars: int) -> int:
    """Room for `bars` bars even at a character per token: the grammar allows at most two
    notes per unit of time, each at most 6 characters with its space (in practice a bar
    takes a fifth of this; end of text stops decoding long before)."""
    return bars * (ceil(header.bar_units * 2) * 6 + 4) + 8


def free_max_new_tokens(header: Header, bars: int) -> int:
    """Unconstrained room: about twice what a bar of the corpus takes, for `bars` bars."""
    return bars * (ceil(header.bar_units * 2) + 6) + 8


def trim_to_bars(body: str, bars: int) -> str:
    """An unconstrained body cut after its `bars`-th bar line (it may run on into more)."""
    for count, match in enumerate(_BAR_LINE.finditer(body), start=1):
        if count == bars:
            return body[: match.end()]
    return body


def compose_headers(
    engine: Engine,
    headers: Sequence[Header],
    bars: int = 16,
    seed: int | None = None,
    constrained: bool = True,
    temperature: float = 0.8,
    top_p: float = 0.95,
    cancel: threading.Event | None = None,
    sampling: Mapping[str, Any] | None = None,
) -> list[Tune]:
    """One tune per header, written in one batch; setting `cancel` stops the decode (the
    tunes are then cut short). `sampling` sets further SamplingParams fields (`max_copy`,
    llama.cpp's samplers); the tune's length and stops are the composer's."""
    if not headers:
        return []
    room = max_new_tokens if constrained else free_max_new_tokens
    params = SamplingParams(
        **{
            "temperature": temperature,
            "top_p": top_p,
            "seed": seed,
            **(sampling or {}),
            "max_new_tokens": max(room(h, bars) for h in headers),
            "stop": [] if constrained else UNCONSTRAINED_STOPS,
        }
    )
    constraints = [AbcConstraint(engine.tokenizer, bars)] if constrained else []
    completions: list[Completion] = []
    prompts = [h.text() for h in headers]
    for _ in engine.decode_deltas(prompts, params, constraints, cancel, completions):
        pass
    bodies = [c.text if constrained else trim_to_bars(c.text, bars) for c in completions]
    return [
        Tune(header, body.strip("\n") + "\n", constrained)
        for header, body in zip(headers, bodies, strict=True)
    ]


def compose(
    request: str,
    bars: int = 16,
    seed: int | None = None,
    engine: Engine | None = None,
    constrained: bool = True,
    temperature: float = 0.8,
    top_p: float = 0.95,
    title: str | None = None,
    sampling: Mapping[str, Any] | None = None,
) -> Tune:
    """A tune for a request such as "a lively jig in D major": rhythm, metre and key come
    from the request (see `header_for`); `constrained=False` lets the model write freely;
    `sampling` as for `compose_headers` (e.g. `{"max_copy": 8}`)."""
    header = header_for(request, title)
    engine = engine or music_engine()
    return compose_headers(
        engine, [header], bars, seed, constrained, temperature, top_p, sampling=sampling
    )[0]
