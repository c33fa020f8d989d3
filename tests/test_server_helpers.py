"""Small real models for the server tests (no test functions live here)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from musegpt.engines.musegpt_model import MuseGPTEngine
from musegpt.model import GPT, GPTConfig
from musegpt.tokenizer import CharTokenizer

TEXT = (
    "The sea was calm and the lighthouse keeper wrote a letter to the moon.\n"
    "She opened the door, and the wind came in with the gulls and the rain.\n"
) * 4


def tiny_engine(name: str = "tiny", block_size: int = 64, seed: int = 0) -> MuseGPTEngine:
    """A tiny random GPT (char tokenizer), perturbed so its outputs vary from token to token."""
    tokenizer = CharTokenizer.train([TEXT])
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32
    )
    model = GPT(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return MuseGPTEngine(model, tokenizer, name=name)


def memorising_engine(tokenizer: Any, text: str, name: str, steps: int = 80) -> MuseGPTEngine:
    """A one-layer GPT trained for `steps` steps (seconds) on `text`, which it learns by
    heart: a model that writes a known text, for tests of what stops it."""
    ids = torch.tensor(tokenizer.encode(text))
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32
    )
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - 33, (16,), generator=generator).tolist()
        x = torch.stack([ids[s : s + 32] for s in starts])
        y = torch.stack([ids[s + 1 : s + 33] for s in starts])
        loss = model(x, targets=y).loss
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return MuseGPTEngine(model.eval(), tokenizer, name=name)


@contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in this process; yields its URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(1500):  # bounded: a server that never starts fails the test
        if server.started:
            break
        time.sleep(0.02)
    assert server.started, "uvicorn did not start within 30 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
