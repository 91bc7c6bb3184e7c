"""The hot route without the framework: ``POST /v1/models/{ref}/predict`` in plain ASGI.

:class:`ServingApp` is the FastAPI app of :func:`~shipyard.serving.create_app`; it answers
the native predict route (``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``) itself, before
FastAPI's middleware stack, router and dependency machinery, which cost more per request
than validating and predicting one row. Everything else (every other route, the version and
alias path forms, MLflow's and the v2 protocol) goes through FastAPI unchanged.

The answer is the same, byte for byte, as the FastAPI route's: the same body
(:func:`~shipyard.serving.protocols.native.predict_bytes`), status, ``content-length`` /
``content-type`` / ``x-request-id`` headers, error bodies for a :class:`ShipyardError`, and
the same metrics and access-log line (:func:`~shipyard.serving.http.record_request`), the
same auth check (401 / 403 when auth is on) and the same prediction-log entry. Any
other exception propagates to the server, which answers 500, as Starlette's error
middleware does.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from shipyard.core.exceptions import ShipyardError
from shipyard.serving.http import (
    denial_start,
    dump_json,
    error_body,
    header_request_id,
    record_request,
)
from shipyard.serving.protocols.native import predict_bytes
from shipyard.serving.state import server_state

_PREFIX = "/v1/models/"
_SUFFIX = "/predict"
_JSON = b"application/json"


class ServingApp(FastAPI):
    """A FastAPI app that answers the native predict route on a fast path."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``POST /v1/models/{ref}/predict`` directly, anything else with FastAPI."""
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path: str = scope["path"]
            if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
                ref = path[len(_PREFIX) : -len(_SUFFIX)]
                if ref and "/" not in ref:
                    scope["app"] = self
                    await self._predict(scope, receive, send, ref)
                    return
        await super().__call__(scope, receive, send)

    async def _predict(self, scope: Scope, receive: Receive, send: Send, ref: str) -> None:
        started = time.perf_counter()
        rid = header_request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid
        server = server_state(self)
        models, metrics, auth, log = (
            server.models,
            server.metrics,
            server.auth,
            server.prediction_log,
        )
        status = 500
        model_name = version = ""
        try:
            if auth is not None:
                denial = auth.check(scope)
                if denial is not None:
                    status = denial.status
                    await send(denial_start(denial, rid))
                    await send({"type": "http.response.body", "body": denial.body})
                    return
            try:
                model = models.resolve(ref)
                model_name, version = model.name, str(model.version)
                body = await _read_body(receive)
                if body is None:
                    return  # the client went away
                content = await predict_bytes(model, body, rid, log, started)
                status = 200
            except ShipyardError as exc:
                status = exc.status_code
                content = dump_json(error_body(exc, rid))
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-length", str(len(content)).encode("latin-1")),
                        (b"content-type", _JSON),
                        (b"x-request-id", rid.encode("latin-1")),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": content})
        finally:
            seconds = time.perf_counter() - started
            record_request(metrics, scope, model_name, version, status, seconds, rid)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or ``None`` when the client disconnected."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
