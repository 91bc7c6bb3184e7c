"""One prediction request as every protocol handles it, on the fast path or through FastAPI.

A protocol's prediction handler is a plain coroutine ``handler(models, exchange, *params)``
that reads the request from an :class:`Exchange` (body, headers, query, request id) and
returns a :class:`Reply` (status, body, content type, extra headers), errors included in
its own wire format. The same handler serves both ways in:

- the ASGI fast path (:mod:`shipyard.serving.protocols.fastpath`), which matches the
  prediction paths itself, before FastAPI's middleware, router and dependency machinery;
- the FastAPI route (:func:`answer_route`), which stays for the OpenAPI pages and for apps
  mounted under a ``root_path``.

So the two give the same bytes. The handler notes which model answered
(:meth:`Exchange.served_by`) for the metrics and the access log, and logs the prediction
(:meth:`Exchange.record`) when the server keeps a prediction log.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from shipyard.serving.auth import model_refusal
from shipyard.serving.base import Prediction, ServedModel
from shipyard.serving.http import note_model, request_id
from shipyard.serving.limits import run_handler
from shipyard.serving.predlog import PredictionLog
from shipyard.serving.state import server_state

JSON = b"application/json"


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler answers: status, body, content type and any other headers."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def response(self) -> Response:
        """The same answer as a Starlette response (the FastAPI routes)."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers}
        headers["content-type"] = self.content_type.decode("latin-1")
        return Response(self.body, self.status, headers)


@dataclass(slots=True)
class Exchange:
    """One prediction request: what it carries, and what answered it."""

    scope: Scope
    body: bytes
    request_id: str
    #: when the request arrived (:func:`time.perf_counter`), for the prediction log
    started: float
    log: PredictionLog | None
    #: the model that answered, set by :meth:`served_by` (metrics labels, access log)
    model: str = ""
    version: str = ""

    def header(self, name: bytes) -> str | None:
        """The value of the request header ``name`` (lower case), or ``None``."""
        for key, value in self.scope["headers"]:
            if key == name:
                return str(value.decode("latin-1"))
        return None

    def query(self, name: str) -> str | None:
        """The first value of the query parameter ``name``, or ``None``."""
        raw: bytes = self.scope.get("query_string", b"")
        if not raw:
            return None
        values = parse_qs(raw.decode("latin-1")).get(name)
        return values[0] if values else None

    def served_by(self, model: ServedModel) -> None:
        """Note the model answering this request; refuse it (403) when the request's token is
        limited to other models."""
        self.model, self.version = model.name, str(model.version)
        refusal = model_refusal(self.scope.get("state", {}).get("token"), model.name)
        if refusal is not None:
            raise refusal

    def record(
        self, model: ServedModel, columns: Mapping[str, Any], prediction: Prediction
    ) -> None:
        """Queue the prediction in the prediction log (when the server keeps one)."""
        if self.log is not None:
            latency = time.perf_counter() - self.started
            self.log.record(
                model.name, model.version, self.request_id, latency, columns, prediction
            )


#: A protocol's prediction handler: the served models, the request, the path's parameters.
Handler = Callable[..., Awaitable[Reply]]


async def answer_route(request: Request, handler: Handler, *params: Any) -> Response:
    """Answer a FastAPI prediction route with ``handler`` (what the fast path runs too)."""
    server = server_state(request.app)
    state = request.scope.get("state", {})
    exchange = Exchange(
        request.scope,
        await request.body(),
        request_id(request),
        state.get("started", time.perf_counter()),
        server.prediction_log,
    )
    reply = await run_handler(handler, server.models, server.settings.limits, exchange, params)
    if exchange.model:
        note_model(request, exchange.model, int(exchange.version))
    return reply.response()
