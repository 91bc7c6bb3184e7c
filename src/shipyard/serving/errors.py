"""The framework's own errors in shipyard's error body, so every error looks the same.

Starlette answers an unknown path (404), a method a route does not take (405) and a body it
cannot parse (400) with an ``HTTPException``; FastAPI answers a path or query parameter of
the wrong type with a ``RequestValidationError`` (422). Both default to FastAPI's
``{"detail": ...}``. :func:`http_error_handler` and :func:`validation_error_handler` answer
them as :func:`~shipyard.serving.http.shipyard_error_handler` answers a
:class:`~shipyard.core.exceptions.ShipyardError`: ``{"error", "type", "request_id"}`` with the
same status (and headers, such as 405's ``Allow``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from shipyard.core.exceptions import (
    InvalidArgumentError,
    MethodNotAllowedError,
    NotFoundError,
    ShipyardError,
)
from shipyard.serving.http import error_body, json_response

#: Characters of a request path an error message echoes.
_MAX_PATH = 100


def _path(request: Request) -> str:
    path = request.url.path
    return path if len(path) <= _MAX_PATH else f"{path[:_MAX_PATH]}…"


def framework_error(request: Request, exc: HTTPException) -> ShipyardError:
    """The shipyard error for one of the framework's ``HTTPException``s."""
    method, path = request.method, _path(request)
    if exc.status_code == 404:
        return NotFoundError(
            f"no route {method} {path}; the API is described at /docs (and /openapi.json)"
        )
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("allow") or (exc.headers or {}).get("Allow") or ""
        return MethodNotAllowedError(
            f"{path} does not take {method}; use {allowed or 'another method'}"
        )
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        return InvalidArgumentError(body_problem(exc.__cause__))
    error = ShipyardError(str(exc.detail))
    error.status_code = exc.status_code
    return error


def body_problem(cause: BaseException | None) -> str:
    """Why a JSON body the framework read could not be parsed, and how to fix it."""
    if isinstance(cause, RecursionError):
        return (
            "the request body is JSON nested too deeply (arrays or objects more than about "
            "1,000 levels deep); send a flat JSON object"
        )
    if isinstance(cause, UnicodeDecodeError):
        return "the request body is not UTF-8 text; send JSON encoded as UTF-8"
    return "the request body could not be read as JSON; send a JSON object"


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """A Starlette ``HTTPException`` (404, 405, 400...) in shipyard's error body."""
    assert isinstance(exc, HTTPException)  # noqa: S101 - narrows the type; the caller guarantees it
    error = framework_error(request, exc)
    headers = dict(exc.headers) if exc.headers else None
    return json_response(error_body(error, request), exc.status_code, headers)


def describe_validation(errors: Sequence[Any]) -> str:
    """The first of FastAPI's validation errors as one sentence naming the parameter."""
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ())]
    where = f"{loc[0]} parameter {'.'.join(loc[1:])}" if len(loc) > 1 else "the request"
    seen = repr(first.get("input"))
    seen = seen if len(seen) <= 60 else f"{seen[:57]}..."
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    message = str(first.get("msg", "is invalid")).rstrip(".")
    return f"{where}: {message[:1].lower()}{message[1:]} (got {seen}){more}"


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """A FastAPI ``RequestValidationError`` (a path or query parameter of the wrong type)
    in shipyard's error body, with FastAPI's status (422)."""
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - narrows the type; the caller guarantees it
    error = InvalidArgumentError(describe_validation(exc.errors()))
    return json_response(error_body(error, request), 422)
