"""shipyard's native prediction API under ``/v1``.

- ``GET /v1/models``: what is served (name, version, aliases, input columns, classes).
- ``POST /v1/models/{ref}/predict`` with ``ref`` = ``NAME`` (the default version),
  ``NAME:VERSION`` or ``NAME@ALIAS``; also ``/v1/models/{name}/versions/{v}/predict`` and
  ``/v1/models/{name}/aliases/{alias}/predict``.

The body is rows as records (``[{"col": v}, ...]`` or ``{"records": [...]}``) or split
(``{"columns": [...], "data": [[...], ...]}``). The answer is
``{"model", "version", "request_id", "predictions"}`` plus ``"probabilities"`` and
``"classes"`` for classifiers. Errors are ``{"error": message, "type", "column"?,
"request_id"}`` with the error's status: 400 malformed body, 404 model not served, 422
input not matching the signature (``column`` names the culprit), 500 model failure.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.serving.columns import records_to_columns, split_to_columns
from shipyard.serving.http import (
    dump_json,
    json_response,
    note_model,
    parse_json,
    request_id,
)
from shipyard.serving.models import ModelManager, ServingModel
from shipyard.serving.predlog import PredictionLog
from shipyard.serving.state import server_state

router = APIRouter(prefix="/v1", tags=["native"])

BODY_SHAPES = (
    'records [{"col": value, ...}, ...], {"records": [...]} or split '
    '{"columns": ["col", ...], "data": [[value, ...], ...]}'
)


def body_columns(payload: Any) -> dict[str, list[Any]]:
    """The columns of a native request body (records or split)."""
    if isinstance(payload, list):
        return records_to_columns(payload)
    if isinstance(payload, dict):
        if "records" in payload:
            return records_to_columns(payload["records"])
        if "columns" in payload and "data" in payload:
            return split_to_columns(payload)
    kind = "an object with keys " + str(sorted(payload)) if isinstance(payload, dict) else None
    raise InvalidArgumentError(f"expected {BODY_SHAPES} but got {kind or type(payload).__name__}")


async def predict_bytes(
    model: ServingModel,
    body: bytes,
    rid: str,
    log: PredictionLog | None = None,
    started: float = 0.0,
) -> bytes:
    """Validate a native request body for ``model``, predict, and answer as JSON bytes.

    The one implementation behind the routes below and the ASGI fast path
    (:mod:`shipyard.serving.protocols.fastpath`): both give byte-identical answers. With a
    prediction ``log`` the answer is queued there, its latency counted from ``started``
    (:func:`time.perf_counter`).
    """
    payload = parse_json(body)
    columns = None
    if type(payload) is list:  # records: the cheap all-numeric path, when it applies
        columns = model.validate_records(payload)
    if columns is None:
        columns = model.validate(body_columns(payload))
    result = await model.predict(columns)
    if log is not None:
        log.record(model.name, model.version, rid, time.perf_counter() - started, columns, result)
    content: dict[str, Any] = {
        "model": model.name,
        "version": model.version,
        "request_id": rid,
        "predictions": result.predictions,
    }
    if result.probabilities is not None:
        content["probabilities"] = result.probabilities
        content["classes"] = result.classes
    return dump_json(content)


async def answer(request: Request, model: ServingModel) -> Response:
    """Validate the body for ``model``, predict, and answer in the native format."""
    note_model(request, model.name, model.version)
    log = server_state(request.app).prediction_log
    started = request.scope.get("state", {}).get("started", 0.0)
    content = await predict_bytes(model, await request.body(), request_id(request), log, started)
    return Response(content, media_type="application/json")


def _models(request: Request) -> ModelManager:
    return server_state(request.app).models


@router.get("/models")
async def list_models(request: Request) -> Response:
    """Every served model version."""
    return json_response({"models": [m.describe() for m in _models(request).serving_models()]})


@router.post("/models/{ref}/predict")
async def predict(request: Request, ref: str) -> Response:
    """Predict with the model ``ref`` (``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``)."""
    return await answer(request, _models(request).resolve(ref))


@router.post("/models/{name}/versions/{version}/predict")
async def predict_version(request: Request, name: str, version: int) -> Response:
    """Predict with version ``version`` of ``name``."""
    return await answer(request, _models(request).lookup(name, version))


@router.post("/models/{name}/aliases/{alias}/predict")
async def predict_alias(request: Request, name: str, alias: str) -> Response:
    """Predict with the version of ``name`` that held ``alias`` when the server loaded it."""
    return await answer(request, _models(request).lookup(name, alias=alias))
