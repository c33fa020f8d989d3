"""The gate every request passes: API keys, body size, client disconnects, crashes, and
per-route metrics.

A plain ASGI middleware (not Starlette's BaseHTTPMiddleware) so streamed responses pass
through untouched and an oversized body is refused while it is still arriving. The app runs
in a task of its own, cancelled when the client hangs up, so no request (whole or streamed)
keeps a model decoding for nobody. A crash becomes a 500 error object and the connection
stays open for the client's next request."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from musegpt.server.errors import APIError
from musegpt.server.metrics import UNMATCHED, Metrics
from musegpt.server.settings import ServerSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = ("/health",)  # answered without a key, so load balancers can probe
# A drawn picture's URL is a capability (128 random bits), fetched without a key like
# OpenAI's image URLs: clients (article 004's among them) GET it with no Authorization.
OPEN_PICTURE = re.compile(r"/v1/images/files/[0-9a-f]{32}\.png")
PROTECTED_PREFIXES = ("/v1/", "/metrics")
REFUSED = "refused"  # the route label of requests refused before routing (401, 413)
CLIENT_GONE = 499  # the status recorded for a request whose client hung up (nginx's)
SHUTDOWN_WAIT_S = 2.0  # for a cancelled request's own clean-up when the server stops
log = logging.getLogger("musegpt.server")


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
        exchange = _Exchange(send)
        route = REFUSED
        try:
            refusal = self._refuse(scope)
            if refusal is not None:
                await exchange.reply(refusal)
                return
            await self._serve(scope, receive, exchange)
            route = route_template(scope)
        finally:
            self.metrics.request(route, exchange.status, time.monotonic() - begun)

    async def _serve(self, scope: Scope, receive: Receive, exchange: _Exchange) -> None:
        body = _Body(receive, self.settings.max_body_bytes)
        exchange.drop_while = lambda: body.too_large  # the app's answer to a cut-off body
        app = asyncio.ensure_future(self.app(scope, body.receive, exchange.send))
        body.on_client_gone = lambda: None if exchange.finished else app.cancel()
        try:
            await asyncio.wait({app})
        except asyncio.CancelledError:  # the server is shutting down: say so, stop the work
            app.cancel()
            if not exchange.started:
                exchange.drop_while = lambda: True  # the app's own answer, if any, is late
                await exchange.reply(APIError(503, "the server is shutting down; retry later"))
            await asyncio.wait({app}, timeout=SHUTDOWN_WAIT_S)
            return
        finally:
            body.stop_watching()
        if body.too_large:
            if not exchange.started:
                await exchange.reply(self._too_large())
            return
        if app.cancelled():
            exchange.status = CLIENT_GONE
            return
        error = app.exception()
        if error is None:
            return
        log.error("request %s %s failed", scope["method"], scope["path"], exc_info=error)
        if not exchange.started:
            # A bug, not bad input; still an error object, never an HTML page.
            message = f"internal error: {type(error).__name__}: {error}"
            await exchange.reply(APIError(500, message))
        elif not exchange.finished:
            raise error  # half an answer: the server must close the connection

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
            and not (scope.get("method") == "GET" and OPEN_PICTURE.fullmatch(path))
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


class _Exchange:
    """The response side of one request: what was sent, and the app's messages dropped
    while `drop_while()` holds (its own answer to a body the guard cut off)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500
        self.started = False
        self.finished = False
        self.drop_while: Callable[[], bool] = lambda: False

    async def send(self, message: Message) -> None:
        if self.drop_while():
            return
        await self._forward(message)

    async def _forward(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            self.finished = True
        await self._send(message)

    async def reply(self, error: APIError) -> None:
        response = error.response()
        await self._forward(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await self._forward({"type": "http.response.body", "body": response.body})


class _Body:
    """The request side: the body counted against the limit as it arrives; once it is all
    in, one watcher reads the connection and reports the client hanging up."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self.limit = limit
        self.seen = 0
        self.too_large = False
        self.on_client_gone: Callable[[], object] = lambda: None
        self._gone = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        if self._watcher is not None:  # the body is in: only a disconnect can come
            await self._gone.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.too_large = True
                raise TooLarge
            if not message.get("more_body"):
                self._watcher = asyncio.ensure_future(self._watch())
        elif message["type"] == "http.disconnect":
            self._gone.set()
        return message

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._gone.set()
                self.on_client_gone()
                return

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


def route_template(scope: Scope) -> str:
    """The template of the route that served this request (`/v1/documents/{document_id}`),
    read from the scope the router filled in, or `unmatched`: a bounded set of labels
    whatever paths clients send."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", UNMATCHED))
    if scope.get("endpoint") is not None and scope.get("root_path"):  # a mount (/static)
        return f"{scope['root_path']}/{{path}}"
    return UNMATCHED


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _known_key(given: str, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every key (no early exit on a match)."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8"))
    return found
