"""Errors as data: every failure is an OpenAI-style error object with the right status.

`{"error": {"message", "type", "param", "code"}}`. The server never answers 409 (the 0.x
`openai` client retries that forever) and bad input never produces a 5xx.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

# status -> the OpenAI error type clients switch on
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",  # a remote engine's server failed
    503: "server_error",
    504: "timeout_error",
}


class APIError(Exception):
    """A failure to report to the client; raised anywhere, turned into JSON by the app."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        kind = ERROR_TYPES.get(self.status, "invalid_request_error")
        return {
            "error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        }

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def invalid(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param, "invalid_parameter" if param else "invalid_request")


def from_validation(errors: Sequence[Any], rename: dict[str, str] | None = None) -> APIError:
    """A 400 naming the first invalid field (pydantic's or FastAPI's error list).

    `rename` maps internal names back to what the client sent (max_new_tokens ->
    max_tokens), so the message names the field the client can fix."""
    rename = rename or {}
    first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return invalid(f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}")
    loc = [str(part) for part in first.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    field = rename.get(loc[0], loc[0]) if loc else None
    where = ".".join([field, *loc[1:]]) if field else ""
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "extra_forbidden":
        message = f"unknown parameter {field!r}"
    elif first.get("type") == "missing":
        message = f"{where} is required"
    elif where:
        message = f"{where}: {message}"
    return invalid(message, field)
