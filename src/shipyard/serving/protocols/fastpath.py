"""The prediction routes without the framework: every protocol's predict call in plain ASGI.

:class:`ServingApp` is the FastAPI app of :func:`~shipyard.serving.create_app`; it answers
the prediction routes itself, before FastAPI's middleware stack, router and dependency
machinery, which cost more per request than validating and predicting one row:

- native ``POST /v1/models/{ref}/predict`` (``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``);
- MLflow's ``POST /invocations`` (``?model=REF`` too);
- Open Inference v2 ``POST /v2/models/{name}/infer`` and
  ``/v2/models/{name}/versions/{version}/infer``.

Everything else (every other route, the native version and alias path forms) goes through
FastAPI unchanged. Both ways run the protocol's own handler
(:mod:`shipyard.serving.protocols.exchange`), so the answer is the same, byte for byte: the
same body, status, ``content-length`` / ``content-type`` / ``x-request-id`` (and protocol)
headers, the same metrics and access-log line (:func:`~shipyard.serving.http.record_request`),
the same auth check (401 / 403 when auth is on) and the same prediction-log entry. Any
exception a handler does not turn into its protocol's error body propagates to the server,
which answers 500, as Starlette's error middleware does. A body refused while it streams in
(above ``max_body_bytes``) is answered, and counted, by the request guard in front
(:class:`~shipyard.serving.limits.RequestGuard`), not here.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from shipyard.core.exceptions import PayloadTooLargeError
from shipyard.serving.http import denial_start, header_request_id, record_request
from shipyard.serving.limits import run_handler
from shipyard.serving.protocols.exchange import Exchange, Handler
from shipyard.serving.protocols.mlflow import invocations_reply
from shipyard.serving.protocols.native import predict_ref
from shipyard.serving.protocols.v2 import infer_reply
from shipyard.serving.state import server_state

_NATIVE_PREFIX, _NATIVE_SUFFIX = "/v1/models/", "/predict"
_V2_PREFIX, _V2_SUFFIX, _V2_VERSIONS = "/v2/models/", "/infer", "/versions/"


def match(path: str) -> tuple[Handler, tuple[Any, ...]] | None:
    """The handler of a prediction path and its parameters, or ``None`` (FastAPI's)."""
    if path.startswith(_NATIVE_PREFIX) and path.endswith(_NATIVE_SUFFIX):
        ref = path[len(_NATIVE_PREFIX) : -len(_NATIVE_SUFFIX)]
        if ref and "/" not in ref:
            return predict_ref, (ref,)
        return None
    if path == "/invocations":
        return invocations_reply, ()
    if path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX):
        rest = path[len(_V2_PREFIX) : -len(_V2_SUFFIX)]
        name, versions, version = rest.partition(_V2_VERSIONS)
        if versions and (not version or "/" in version):
            return None
        if name and "/" not in name:
            return infer_reply, (name, version or None)
    return None


class ServingApp(FastAPI):
    """A FastAPI app that answers the prediction routes on a fast path."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a prediction call directly, anything else with FastAPI."""
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            found = match(scope["path"])
            if found is not None:
                scope["app"] = self
                await self._answer(scope, receive, send, *found)
                return
        await super().__call__(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, handler: Handler, params: tuple[Any, ...]
    ) -> None:
        started = time.perf_counter()
        rid = header_request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid
        server = server_state(self)
        status = 500
        counted = False
        exchange: Exchange | None = None
        try:
            if server.auth is not None:
                denial = server.auth.check(scope)
                if denial is not None:
                    status = denial.status
                    await send(denial_start(denial, rid))
                    await send({"type": "http.response.body", "body": denial.body})
                    return
            try:
                body = await _read_body(receive)
            except PayloadTooLargeError:
                # Refused while it streamed in: the request guard in front answers 413 and
                # counts it (so counting it here too would add a 500 that never was).
                counted = True
                raise
            if body is None:
                return  # the client went away
            exchange = Exchange(scope, body, rid, started, server.prediction_log)
            limits = server.settings.limits
            reply = await run_handler(handler, server.models, limits, exchange, params)
            status = reply.status
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-length", str(len(reply.body)).encode("latin-1")),
                        (b"content-type", reply.content_type),
                        *reply.headers,
                        (b"x-request-id", rid.encode("latin-1")),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": reply.body})
        finally:
            if not counted:
                seconds = time.perf_counter() - started
                model, version = (exchange.model, exchange.version) if exchange else ("", "")
                record_request(server.metrics, scope, model, version, status, seconds, rid)


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
