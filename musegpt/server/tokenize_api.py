"""`/tokenize` and `/detokenize` in vLLM's shape, so a MuseGPT using this server as its
remote engine counts tokens exactly as this server's model does."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from musegpt.engines.base import Engine
from musegpt.generation.processors import check_token_ids
from musegpt.server.errors import invalid
from musegpt.server.state import state_of

router = APIRouter()


class TokenizeRequest(BaseModel):
    model: str | None = None
    prompt: str


class DetokenizeRequest(BaseModel):
    model: str | None = None
    tokens: list[int]


def _engine(request: Request, model: str | None) -> Engine:
    return state_of(request).models.get(model).ready().engine


@router.post("/tokenize")
def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
    engine = _engine(request, body.model)
    tokens = engine.tokenize(body.prompt)
    return {"tokens": tokens, "count": len(tokens), "max_model_len": engine.context_length}


@router.post("/detokenize")
def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
    engine = _engine(request, body.model)
    try:
        check_token_ids(body.tokens, engine.info.vocab_size, "tokens")
    except ValueError as err:
        raise invalid(str(err), "tokens") from None
    return {"prompt": engine.detokenize(body.tokens)}
