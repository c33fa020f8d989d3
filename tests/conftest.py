import pytest
import torch

from musegpt.engines.base import Engine
from musegpt.engines.registry import open_engine
from musegpt.studio import Studio

# Tests use tiny models; one thread each keeps them quick and lets two test processes share
# a 2-core machine without oversubscription.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def gemma() -> Engine:
    """The default model (Gemma 3 270M on llama.cpp), loaded once for every test file."""
    return open_engine(None)


@pytest.fixture(scope="module")
def studio(gemma: Engine) -> Studio:
    return Studio(gemma)
