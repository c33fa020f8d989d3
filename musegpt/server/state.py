"""What every handler reaches through `request.app.state`: models, settings, metrics and
the works library."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from musegpt.server.hosts import Models
from musegpt.server.metrics import Metrics
from musegpt.server.settings import ServerSettings

if TYPE_CHECKING:
    from musegpt.store.works import WorksStore


@dataclass
class ServerState:
    models: Models
    settings: ServerSettings
    store: WorksStore | None
    metrics: Metrics = field(default_factory=Metrics)
    started: int = field(default_factory=lambda: int(time.time()))


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.musegpt
    return state
