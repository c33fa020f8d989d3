"""`musegpt serve`: an OpenAI-compatible HTTP API, the works library's REST endpoints and
the web studio, in one FastAPI app (`create_app`)."""

from musegpt.server.app import create_app
from musegpt.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
