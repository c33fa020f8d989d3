"""The gate every request passes: API keys, body size, and per-route metrics.

A plain ASGI middleware (not Starlette's BaseHTTPMiddleware) so streamed responses pass
through untouched and an oversized body is refused while it is still arriving."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from musegpt.server.errors import APIError
from musegpt.server.metrics import Metrics
from musegpt.server.settings import ServerSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = ("/health",)  # answered without a key, so load balancers can probe
PROTECTED_PREFIXES = ("/v1/", "/metrics")


class TooLarge(Exception):
    pass


class Guard:
    def __init__(self, app: ASGIApp, settings: ServerSettings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        begun = time.monotonic()
        status = {"code": 500}

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            refusal = self._refuse(scope)
            if refusal is not None:
                await self._reply(refusal, send_counted)
                return
            await self.app(scope, self._limited(receive), send_counted)
        except TooLarge:
            await self._reply(self._too_large(), send_counted)
        finally:
            route = _route_label(scope.get("path", ""))
            self.metrics.request(route, status["code"], time.monotonic() - begun)

    def _refuse(self, scope: Scope) -> APIError | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.settings.max_body_bytes:
            return self._too_large()
        path: str = scope.get("path", "")
        if (
            self.settings.api_keys
            and path not in OPEN_PATHS
            and path.startswith(PROTECTED_PREFIXES)
        ):
            given = _bearer(headers.get("authorization", "")) or headers.get("x-api-key", "")
            if not given:
                return APIError(
                    401,
                    "an API key is required: send 'Authorization: Bearer KEY'",
                    None,
                    "missing_api_key",
                )
            if not _known_key(given, self.settings.api_keys):
                return APIError(401, "the API key is not valid", None, "invalid_api_key")
        return None

    def _too_large(self) -> APIError:
        return APIError(
            413,
            f"the request body is larger than {self.settings.max_body_bytes} bytes",
            None,
            "request_too_large",
        )

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.settings.max_body_bytes:
                    raise TooLarge
            return message

        return counted

    @staticmethod
    async def _reply(error: APIError, send: Send) -> None:
        response = error.response()
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _known_key(given: str, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every key (no early exit on a match)."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8"))
    return found


def _route_label(path: str) -> str:
    """A bounded set of labels: ids in paths are folded away."""
    parts = ["{id}" if p.isdigit() else p for p in path.split("/")]
    if len(parts) > 3 and parts[1:3] == ["v1", "engines"]:
        parts[3] = "{engine}"
    label = "/".join(parts[:6])
    return label if label.startswith(("/v1", "/health", "/metrics")) else "/"
