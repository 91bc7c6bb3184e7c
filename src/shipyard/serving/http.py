"""HTTP plumbing every protocol shares: orjson bodies, request ids, access log, metrics, auth.

:class:`ServingMiddleware` is a plain ASGI middleware (no per-request Starlette objects):
it takes the ``x-request-id`` header or makes one, echoes it on the answer, times the
request (its start is ``state["started"]``, for the prediction log), refuses it with 401 /
403 when auth is on and its token does not allow the route
(:class:`~shipyard.serving.auth.Authenticator`), counts it in the metrics under the model
the handler served (handlers call :func:`note_model`) and writes one JSON line per request
to the ``shipyard.access`` logger.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.core.exceptions import InvalidArgumentError, SchemaError, ShipyardError
from shipyard.serving.auth import Authenticator, Denial
from shipyard.serving.metrics import ServingMetrics

access_logger = logging.getLogger("shipyard.access")

REQUEST_ID_HEADER = "x-request-id"
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_MAX_REQUEST_ID = 128
#: Path prefixes of the prediction protocols, for the ``protocol`` metric label.
PROTOCOLS = (("/v1/models/", "native"), ("/invocations", "mlflow"), ("/v2/", "v2"))


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dump_json(content: Any) -> bytes:
    """``content`` as JSON bytes; numpy arrays and scalars are written natively."""
    return orjson.dumps(content, default=_default, option=_JSON_OPTIONS)


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer serialised with orjson."""
    return Response(dump_json(content), status_code, headers, media_type="application/json")


def parse_json(body: bytes) -> Any:
    """The request body as JSON, or :class:`InvalidArgumentError` (400) saying where it broke."""
    if not body:
        raise InvalidArgumentError("the request body is empty; send a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion limit" in str(exc):
            raise _too_deep() from exc
        # Python's json (and so MLflow's generated examples) writes NaN / Infinity, which
        # strict JSON parsers refuse: accept them on this slower path.
        try:
            return json.loads(body)
        except RecursionError:  # nested deeper than Python's stack: refused, never a crash
            raise _too_deep() from exc
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgumentError(f"the request body is not valid JSON: {exc}") from exc


def _too_deep() -> InvalidArgumentError:
    return InvalidArgumentError(
        "the request body is JSON nested too deeply (arrays or objects more than about 1,000 "
        "levels deep); send rows as a flat list of records or columns"
    )


def request_id(request: Request) -> str:
    """The id of the request being answered (from ``x-request-id`` or generated)."""
    return str(request.scope.get("state", {}).get("request_id", ""))


def note_model(request: Request, name: str, version: int) -> None:
    """Record which model answers this request (for metrics labels and the access log)."""
    state = request.scope.setdefault("state", {})
    state["model"] = name
    state["version"] = str(version)


def error_body(exc: ShipyardError, request: Request | str) -> dict[str, Any]:
    """Native (and Open Inference v2 compatible) error body: ``{"error": message, ...}``.

    ``request`` is the request being answered, or its id.
    """
    body: dict[str, Any] = {"error": exc.message, "type": type(exc).__name__}
    if isinstance(exc, SchemaError) and exc.column is not None:
        body["column"] = exc.column
    body["request_id"] = request if isinstance(request, str) else request_id(request)
    return body


async def shipyard_error_handler(request: Request, exc: Exception) -> Response:
    """The one place a :class:`ShipyardError` becomes an HTTP answer (its ``status_code``)."""
    assert isinstance(exc, ShipyardError)  # noqa: S101 - narrows the type; the caller guarantees it
    return json_response(error_body(exc, request), exc.status_code)


_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A fresh 32-hex-digit request id: a random per-process prefix and a counter.

    Unique like ``uuid4().hex`` for the life of the process, without a system call per request.
    """
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def clean_request_id(raw: bytes | None) -> str:
    """The client's ``x-request-id`` when printable and short enough, else a new id."""
    if raw:
        text = raw.decode("latin-1")
        if len(text) <= _MAX_REQUEST_ID and text.isprintable():
            return text
    return new_request_id()


def header_request_id(scope: Scope) -> str:
    """The request id for this HTTP request (from its ``x-request-id`` header or new)."""
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            return clean_request_id(value)
    return new_request_id()


def record_request(
    metrics: ServingMetrics,
    scope: Scope,
    model: str,
    version: str,
    status: int,
    seconds: float,
    rid: str,
) -> None:
    """Count a finished request in the metrics and write its access-log line (if enabled)."""
    path: str = scope["path"]
    if scope["method"] == "POST":
        protocol = next((name for prefix, name in PROTOCOLS if path.startswith(prefix)), None)
        if protocol is not None:
            metrics.observe_request(model, version, protocol, status, seconds)
    if access_logger.isEnabledFor(logging.INFO):
        access_logger.info(
            orjson.dumps(
                {
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "model": model or None,
                    "version": version or None,
                    "request_id": rid,
                }
            ).decode()
        )


def denial_start(denial: Denial, rid: str) -> Message:
    """The ``http.response.start`` message of a refused request."""
    return {
        "type": "http.response.start",
        "status": denial.status,
        "headers": [
            (b"content-length", str(len(denial.body)).encode("latin-1")),
            (b"content-type", b"application/json"),
            (b"x-request-id", rid.encode("latin-1")),
            *denial.headers,
        ],
    }


def redirect_headers(headers: Iterable[tuple[bytes, bytes]], public_url: str) -> list[Any]:
    """``headers`` with ``location`` pointing under ``public_url`` (or relative), never at the
    request's ``Host`` header (which a client chooses: an open redirect)."""
    kept: list[Any] = []
    for key, value in headers:
        if key.lower() == b"location":
            parts = urlsplit(value.decode("latin-1"))
            target = urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))
            value = (public_url + target).encode("latin-1")
        kept.append((key, value))
    return kept


class ServingMiddleware:
    """Request ids, timing, auth, metrics and the access log, around every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServingMetrics,
        auth: Authenticator | None = None,
        public_url: str | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.auth = auth
        self.public_url = public_url or ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = header_request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["started"] = started
        status = 500
        id_header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", [])
                if 300 <= status < 400:
                    headers = redirect_headers(headers, self.public_url)
                message["headers"] = [*headers, id_header]
            await send(message)

        try:
            denial = self.auth.check(scope) if self.auth is not None else None
            if denial is None:
                await self.app(scope, receive, send_with_id)
            else:
                status = denial.status
                await send(denial_start(denial, rid))
                await send({"type": "http.response.body", "body": denial.body})
        finally:
            seconds = time.perf_counter() - started
            model = str(state.get("model", ""))
            version = str(state.get("version", ""))
            record_request(self.metrics, scope, model, version, status, seconds, rid)
