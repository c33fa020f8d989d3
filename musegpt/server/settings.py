"""What a server is allowed to do: keys, limits, queue, timeouts, CORS, where works live."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

API_KEY_ENV = "MUSEGPT_API_KEY"


@dataclass(frozen=True)
class ServerSettings:
    api_keys: tuple[str, ...] = ()  # empty: no key needed
    max_body_bytes: int = 1_000_000
    max_prompt_tokens: int = 8192
    max_tokens: int = 2048  # per completion
    max_n: int = 8
    max_batch_rows: int = 32  # rows one MuseGPT model decodes together
    max_queue: int = 64  # requests waiting per model before 429
    request_timeout_s: float = 600.0
    cors_origins: tuple[str, ...] = ()  # empty: CORS off
    data_dir: Path = field(default_factory=lambda: Path("musegpt-works"))
    studio_web: bool = True
    moderation: Literal["off", "flag", "block"] = "off"  # what generation endpoints do with it
