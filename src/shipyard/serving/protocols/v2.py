"""Open Inference Protocol v2 routes (KServe V2, Triton, Seldon MLServer) over the serving core.

``v2_router(models, server_name, server_version)`` gives a FastAPI router with health, server
and model metadata, model readiness and ``/infer`` (JSON, or Triton's binary tensor extension,
so ``tritonclient.http`` works with its defaults). Bodies are read raw and parsed by
:mod:`shipyard.serving.protocols.v2_codec`; errors answer in the protocol's own form,
``{"error": "message"}``, with the status of the :class:`ShipyardError` raised.
"""

from __future__ import annotations

import logging
import uuid
import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from shipyard.core.exceptions import InvalidArgumentError, ShipyardError
from shipyard.serving.base import ModelLookup, ServedModel
from shipyard.serving.http import note_model, request_id
from shipyard.serving.protocols.v2_codec import (
    HEADER_LENGTH,
    PREDICT_OUTPUT,
    PROBA_OUTPUT,
    decode_request,
    encode_response,
    signature_datatype,
)
from shipyard.serving.state import note_prediction

__all__ = ["model_metadata", "v2_router"]

logger = logging.getLogger(__name__)

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

    async def infer(request: Request, name: str, version: str | None) -> Response:
        try:
            model = _find(models, name, version)
            if version is None:  # an unpinned request may go to the model's canary
                model = models.route(model)
            note_model(request, model.name, model.version)
            body = _decompress(await request.body(), request.headers.get("content-encoding"))
            decoded = decode_request(body, _header_length(request), model.signature)
            validated = model.validate(decoded.columns)
            prediction = await model.predict(validated)
            payload, headers = encode_response(
                model.name,
                model.version,
                decoded.request_id or request_id(request) or uuid.uuid4().hex,
                prediction,
                decoded.requested_outputs,
                decoded.binary_outputs_wanted,
            )
        except ShipyardError as exc:
            return _error(exc)
        except Exception as exc:  # the protocol's error body, even for a bug
            logger.exception("v2 inference on model %r failed", name)
            return _json({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)
        note_prediction(request, model, validated, prediction)
        return Response(payload, headers=headers)

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
        return await infer(request, name, None)

    @router.post("/v2/models/{name}/versions/{version}/infer")
    async def post_version_infer(request: Request, name: str, version: str) -> Response:
        """Predict with one version."""
        return await infer(request, name, version)

    return router


def model_metadata(model: ServedModel, versions: list[int]) -> dict[str, Any]:
    """The v2 model metadata: one BYTES/numeric tensor per signature column, -1 for rows.

    Outputs are ``predict`` (the signature's output dtype and shape) and, for classifiers
    (a signature listing classes), ``predict_proba`` as FP64 ``[-1, classes]``.
    """
    signature = model.signature
    inputs = [
        {"name": c.name, "datatype": signature_datatype(c.dtype), "shape": [-1]}
        for c in (signature.inputs if signature is not None else ())
    ]
    spec = signature.outputs if signature is not None else None
    outputs: list[dict[str, Any]] = [
        {
            "name": PREDICT_OUTPUT,
            "datatype": signature_datatype(spec.dtype) if spec is not None else "BYTES",
            "shape": list(spec.shape) if spec is not None else [-1],
        }
    ]
    if spec is not None and spec.classes:
        outputs.append({"name": PROBA_OUTPUT, "datatype": "FP64", "shape": [-1, len(spec.classes)]})
    return {
        "name": model.name,
        "versions": [str(v) for v in versions],
        "platform": f"shipyard-{model.flavor}",
        "inputs": inputs,
        "outputs": outputs,
    }


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


def _header_length(request: Request) -> int | None:
    raw = request.headers.get(HEADER_LENGTH)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"{HEADER_LENGTH} must be the JSON part's length in bytes but is {raw!r}"
        ) from exc


def _decompress(body: bytes, encoding: str | None) -> bytes:
    """Undo the gzip/deflate ``Content-Encoding`` tritonclient can apply to requests."""
    if not encoding or encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidArgumentError(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none"
        )
    try:
        return zlib.decompress(body, wbits=31 if encoding == "gzip" else 15)
    except zlib.error as exc:
        raise InvalidArgumentError(f"the {encoding} request body is corrupt: {exc}") from exc


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status, media_type="application/json")


def _error(exc: ShipyardError) -> Response:
    return _json({"error": exc.message}, exc.status_code)
