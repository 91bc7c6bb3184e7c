"""Open Inference Protocol v2 routes (KServe V2, Triton, Seldon MLServer) over the serving core.

``v2_router(models, server_name, server_version)`` gives a FastAPI router with health, server
and model metadata, model readiness and ``/infer`` (JSON, or Triton's binary tensor extension,
so ``tritonclient.http`` works with its defaults). Bodies are read raw and parsed by
:mod:`shipyard.serving.protocols.v2_codec`; errors answer in the protocol's own form,
``{"error": "message"}``, with the status of the :class:`ShipyardError` raised. ``/infer``
is :func:`infer_reply`, which the ASGI fast path (:mod:`shipyard.serving.protocols.fastpath`)
also calls directly.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from shipyard.core.exceptions import InvalidArgumentError, ShipyardError
from shipyard.serving.base import ModelLookup, ServedModel
from shipyard.serving.limits import inflate
from shipyard.serving.protocols.exchange import Exchange, Reply, answer_route
from shipyard.serving.protocols.v2_codec import (
    HEADER_LENGTH,
    decode_request,
    encode_response,
    model_metadata,
)
from shipyard.serving.state import server_state

__all__ = ["model_metadata", "v2_router"]

logger = logging.getLogger(__name__)

_HEADER_LENGTH_KEY = HEADER_LENGTH.lower().encode("latin-1")

#: Protocol extensions this server implements, as ``GET /v2`` lists them.
EXTENSIONS = ("binary_tensor_data",)


def v2_router(models: ModelLookup, server_name: str, server_version: str) -> APIRouter:
    """The ``/v2`` routes serving ``models``."""
    router = APIRouter(tags=["Open Inference Protocol v2"])
    server = {"name": server_name, "version": server_version, "extensions": list(EXTENSIONS)}

    @router.get("/v2/health/live")
    async def live() -> Response:
        """The process answers."""
        return _json({"live": True})

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        """Every model is loaded and warmed up (503 until then)."""
        is_ready = models.ready()
        return _json({"ready": is_ready}, 200 if is_ready else 503)

    @router.get("/v2")
    async def server_metadata() -> Response:
        """Server name, version and protocol extensions."""
        return _json(server)

    async def metadata(name: str, version: str | None) -> Response:
        try:
            model = _find(models, name, version)
            versions = sorted(m.version for m in models.served() if m.name == model.name)
            return _json(model_metadata(model, versions or [model.version]))
        except ShipyardError as exc:
            return _error(exc)

    async def model_ready(name: str, version: str | None) -> Response:
        try:
            model = _find(models, name, version)
        except ShipyardError as exc:
            return _error(exc)
        return _json({"name": model.name, "version": str(model.version), "ready": True})

    @router.get("/v2/models/{name}")
    async def get_metadata(name: str) -> Response:
        """Model metadata: versions, platform, input and output tensors."""
        return await metadata(name, None)

    @router.get("/v2/models/{name}/versions/{version}")
    async def get_version_metadata(name: str, version: str) -> Response:
        """Metadata of one version."""
        return await metadata(name, version)

    @router.get("/v2/models/{name}/ready")
    async def get_ready(name: str) -> Response:
        """200 when the model is served, 404 otherwise."""
        return await model_ready(name, None)

    @router.get("/v2/models/{name}/versions/{version}/ready")
    async def get_version_ready(name: str, version: str) -> Response:
        """200 when that version is served, 404 otherwise."""
        return await model_ready(name, version)

    @router.post("/v2/models/{name}/infer")
    async def post_infer(request: Request, name: str) -> Response:
        """Predict with the version served by default."""
        return await answer_route(request, infer_reply, name, None)

    @router.post("/v2/models/{name}/versions/{version}/infer")
    async def post_version_infer(request: Request, name: str, version: str) -> Response:
        """Predict with one version."""
        return await answer_route(request, infer_reply, name, version)

    return router


async def infer_reply(
    models: ModelLookup, exchange: Exchange, name: str, version: str | None
) -> Reply:
    """``POST /v2/models/{name}[/versions/{version}]/infer``: the handler the fast path and
    the routes share."""
    try:
        model = _find(models, name, version)
        if version is None:  # an unpinned request may go to the model's canary
            model = models.route(model)
        exchange.served_by(model)
        body = _decompress(exchange)
        length = _header_length(exchange.header(_HEADER_LENGTH_KEY))
        decoded = decode_request(body, length, model.signature)
        validated = model.validate(decoded.columns)
        prediction = await model.predict(validated)
        payload, headers = encode_response(
            model.name,
            model.version,
            decoded.request_id or exchange.request_id or uuid.uuid4().hex,
            prediction,
            decoded.requested_outputs,
            decoded.binary_outputs_wanted,
        )
    except ShipyardError as exc:
        return _reply_error(exc)
    except Exception as exc:  # the protocol's error body, even for a bug
        logger.exception("v2 inference on model %r failed", name)
        error = {"error": f"internal error: {type(exc).__name__}: {exc}"}
        return Reply(500, orjson.dumps(error))
    exchange.record(model, validated, prediction)
    content_type = headers.pop("content-type", "application/json").encode("latin-1")
    extra = tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    return Reply(200, payload, content_type, extra)


def _reply_error(exc: ShipyardError) -> Reply:
    return Reply(exc.status_code, orjson.dumps({"error": exc.message}))


def _find(models: ModelLookup, name: str, version: str | None) -> ServedModel:
    if version is None:
        return models.get(name)
    try:
        number = int(version)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"model version {version!r} is not a number; use /v2/models/{name}/versions/<int>"
        ) from exc
    return models.get(name, number)


def _header_length(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"{HEADER_LENGTH} must be the JSON part's length in bytes but is {raw!r}"
        ) from exc


def _decompress(exchange: Exchange) -> bytes:
    """Undo the gzip/deflate ``Content-Encoding`` tritonclient can apply to requests, within
    the server's ``max_decompressed_bytes`` (413 past it, without inflating further)."""
    encoding = exchange.header(b"content-encoding")
    if not encoding or encoding == "identity":
        return exchange.body
    if encoding not in ("gzip", "deflate"):
        raise InvalidArgumentError(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none"
        )
    limits = server_state(exchange.scope["app"]).settings.limits
    return inflate(exchange.body, encoding, limits.max_decompressed_bytes)


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status, media_type="application/json")


def _error(exc: ShipyardError) -> Response:
    return _reply_error(exc).response()
