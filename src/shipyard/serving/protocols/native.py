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

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from shipyard.core.exceptions import InvalidArgumentError, ShipyardError
from shipyard.serving.base import ModelLookup, ServedModel
from shipyard.serving.columns import records_to_columns, split_to_columns
from shipyard.serving.http import dump_json, error_body, json_response, parse_json
from shipyard.serving.protocols.exchange import Exchange, Reply, answer_route
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


async def predict_bytes(model: ServedModel, exchange: Exchange) -> bytes:
    """Validate a native request body for ``model``, predict, and answer as JSON bytes.

    The prediction is logged when the server keeps a prediction log.
    """
    payload = parse_json(exchange.body)
    columns = None
    if type(payload) is list:  # records: the cheap all-numeric path, when it applies
        columns = model.validate_records(payload)
    if columns is None:
        columns = model.validate(body_columns(payload))
    result = await model.predict(columns)
    exchange.record(model, columns, result)
    content: dict[str, Any] = {
        "model": model.name,
        "version": model.version,
        "request_id": exchange.request_id,
        "predictions": result.predictions,
    }
    if result.probabilities is not None:
        content["probabilities"] = result.probabilities
        content["classes"] = result.classes
    return dump_json(content)


async def answer(exchange: Exchange, find: Callable[[], ServedModel]) -> Reply:
    """The native answer for the model ``find`` returns; errors as the native error body."""
    try:
        model = find()
        exchange.served_by(model)
        return Reply(200, await predict_bytes(model, exchange))
    except ShipyardError as exc:
        return Reply(exc.status_code, dump_json(error_body(exc, exchange.request_id)))


async def predict_ref(models: ModelLookup, exchange: Exchange, ref: str) -> Reply:
    """``POST /v1/models/{ref}/predict``: the handler the fast path and the route share."""
    return await answer(exchange, lambda: models.resolve(ref))


async def predict_version(
    models: ModelLookup, exchange: Exchange, name: str, version: int
) -> Reply:
    """``POST /v1/models/{name}/versions/{version}/predict``."""
    return await answer(exchange, lambda: models.get(name, version))


async def predict_alias(models: ModelLookup, exchange: Exchange, name: str, alias: str) -> Reply:
    """``POST /v1/models/{name}/aliases/{alias}/predict``."""
    return await answer(exchange, lambda: models.get(name, alias=alias))


@router.get("/models")
async def list_models(request: Request) -> Response:
    """Every served model version."""
    models = server_state(request.app).models
    return json_response({"models": [m.describe() for m in models.served()]})


@router.post("/models/{ref}/predict")
async def predict(request: Request, ref: str) -> Response:
    """Predict with the model ``ref`` (``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``)."""
    return await answer_route(request, predict_ref, ref)


@router.post("/models/{name}/versions/{version}/predict")
async def post_version(request: Request, name: str, version: int) -> Response:
    """Predict with version ``version`` of ``name``."""
    return await answer_route(request, predict_version, name, version)


@router.post("/models/{name}/aliases/{alias}/predict")
async def post_alias(request: Request, name: str, alias: str) -> Response:
    """Predict with the version of ``name`` that held ``alias`` when the server loaded it."""
    return await answer_route(request, predict_alias, name, alias)
