"""MLflow's scoring protocol, as ``mlflow models serve`` (MLflow 3.x) speaks it.

- ``POST /invocations`` with ``application/json`` — an object with exactly one of
  ``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs``, plus optional
  ``params`` (accepted and ignored, as MLflow does for models without a params schema) —
  or ``text/csv`` (a header row, then rows). The only content-type parameter allowed is
  ``charset=utf-8``; anything else is 415 with a plain-text reason, as in MLflow.
  The answer is ``{"predictions": [...]}``; a body MLflow generated for the model
  (``serving_input_example.json``) works unchanged.
- Errors are MLflow's body ``{"error_code": "BAD_REQUEST", "message": ...}`` with 400 (bad
  input, including a signature mismatch), ``RESOURCE_DOES_NOT_EXIST`` with 404 (``?model=``
  names a model not served) and ``INTERNAL_ERROR`` with 500 (the model failed).
- ``GET /ping`` and ``GET /health``: 200 once the models are loaded, 404 before;
  ``GET /version``: the shipyard version.

With several served models, ``/invocations`` serves the first reference given to the
server; ``/invocations?model=REF`` (``NAME``, ``NAME:VERSION``, ``NAME@ALIAS``) picks another.
It is :func:`invocations_reply`, which the ASGI fast path
(:mod:`shipyard.serving.protocols.fastpath`) also calls directly.
"""

from __future__ import annotations

import csv
import io
from importlib import metadata
from typing import Any

import pandas as pd
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from shipyard.core.exceptions import InvalidArgumentError, ShipyardError
from shipyard.core.schema import Signature
from shipyard.serving.base import ModelLookup, ServedModel
from shipyard.serving.columns import records_to_columns, rows_to_columns, split_to_columns
from shipyard.serving.http import dump_json, parse_json
from shipyard.serving.protocols.csv_small import small_csv_columns
from shipyard.serving.protocols.exchange import Exchange, Reply, answer_route
from shipyard.serving.state import server_state

router = APIRouter(tags=["mlflow"])

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
REQUIRED_INPUT_FORMAT = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    f"{{{', '.join(repr(f) for f in FORMATS)}}}"
)


def _models(request: Request) -> ModelLookup:
    return server_state(request.app).models


def mlflow_error(exc: ShipyardError) -> Reply:
    """MLflow's error body for ``exc``: 400 BAD_REQUEST, 403, 404, 503 or 500 INTERNAL_ERROR."""
    if exc.status_code == 503:
        code, status = "TEMPORARILY_UNAVAILABLE", 503
    elif exc.status_code >= 500:
        code, status = "INTERNAL_ERROR", 500
    elif exc.status_code == 403:
        code, status = "PERMISSION_DENIED", 403
    elif exc.status_code == 404:
        code, status = "RESOURCE_DOES_NOT_EXIST", 404
    else:
        code, status = "BAD_REQUEST", 400
    return Reply(status, dump_json({"error_code": code, "message": exc.message}))


def content_type_problem(value: str | None) -> tuple[str, str | None]:
    """The media type of ``value``, and why MLflow's rules refuse it (None when accepted)."""
    if not value:
        return "", (
            f"This predictor only supports the following content types: "
            f"{CONTENT_TYPE_JSON}, {CONTENT_TYPE_CSV}. Got no Content-Type header."
        )
    parts = [p.strip() for p in value.split(";")]
    mime = parts[0].lower()
    params = {
        key.strip().lower(): val.strip().strip('"')
        for key, _, val in (p.partition("=") for p in parts[1:] if p)
    }
    if params.pop("charset", "utf-8").lower() != "utf-8":
        return mime, "The scoring server only supports UTF-8"
    if params:
        return mime, f"Unrecognized content type parameters: {', '.join(sorted(params))}."
    if mime not in (CONTENT_TYPE_JSON, CONTENT_TYPE_CSV):
        return mime, (
            f"This predictor only supports the following content types: "
            f"{CONTENT_TYPE_JSON}, {CONTENT_TYPE_CSV}. Got {value!r}."
        )
    return mime, None


def json_columns(payload: Any, model: ServedModel) -> dict[str, Any]:
    """The columns of an MLflow JSON body (one of :data:`FORMATS`, plus ``params``)."""
    if not isinstance(payload, dict):
        kind = "a list" if isinstance(payload, list) else type(payload).__name__
        raise InvalidArgumentError(f"{REQUIRED_INPUT_FORMAT}. Received {kind}.")
    keys = [k for k in payload if k in FORMATS]
    if len(keys) != 1:
        raise InvalidArgumentError(
            f"{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: {list(payload)}."
        )
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise InvalidArgumentError(f"'params' must be an object but got {type(params).__name__}")
    data = payload[keys[0]]
    if keys[0] == "dataframe_records":
        return records_to_columns(data)
    if keys[0] == "dataframe_split":
        if isinstance(data, dict) and "columns" not in data:
            return rows_to_columns(data.get("data"), _signature_columns(model))
        return split_to_columns(data)
    return _tf_serving_columns(data, model)


def _tf_serving_columns(data: Any, model: ServedModel) -> dict[str, Any]:
    """``instances`` / ``inputs``: rows as objects or lists, or one object of columns."""
    if isinstance(data, dict):
        return {k: v if isinstance(v, list) else [v] for k, v in data.items()}
    if isinstance(data, list) and data:
        if isinstance(data[0], dict):
            return records_to_columns(data)
        names = _signature_columns(model)
        if isinstance(data[0], list):
            return rows_to_columns(data, names)
        if len(names) == 1:
            return {names[0]: data}
    raise InvalidArgumentError(
        "expected 'instances' / 'inputs' as a list of row objects, a list of rows in "
        f"signature order, or an object of columns, but got {type(data).__name__} {data!r:.100}"
    )


def _signature_columns(model: ServedModel) -> list[str]:
    if model.signature is None or not model.signature.inputs:
        raise InvalidArgumentError(
            f"model {model.name}:{model.version} has no signature, so rows without column "
            "names cannot be matched to columns; send dataframe_records or dataframe_split "
            "with columns"
        )
    return model.signature.columns


def csv_columns(body: bytes, model: ServedModel) -> dict[str, Any]:
    """The columns of a CSV body (header row first), text columns read as text: as
    ``pandas.read_csv`` reads them (a small plain body without pandas: :mod:`.csv_small`)."""
    if model.signature is not None:
        small = small_csv_columns(body, model.signature)
        if small is not None:
            return small
    return pandas_csv_columns(body, model.signature)


def pandas_csv_columns(body: bytes, signature: Signature | None) -> dict[str, Any]:
    """The columns of a CSV body read by ``pandas.read_csv``, as MLflow's scoring server
    reads it (the signature's text columns read as text)."""
    text_columns: dict[str, Any] = {}
    if signature is not None:
        text_columns = {c.name: str for c in signature.inputs if c.dtype in ("string", "category")}
    try:
        frame = pd.read_csv(io.BytesIO(body), dtype=text_columns or None)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InvalidArgumentError(
            "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
            f"CSV-formatted Pandas DataFrame produced using the `pandas.DataFrame.to_csv()` "
            f"method. Error: '{exc}'"
        ) from exc
    _check_first_row(body)
    return {str(name): frame[name].to_numpy() for name in frame.columns}


def _check_first_row(body: bytes) -> None:
    """Refuse a first row longer than the header, which pandas silently reads as an index
    (shifting every value one column over, so an error would blame the wrong column)."""
    text = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8", errors="replace", newline="")
    records = (record for record in csv.reader(text) if record)  # pandas skips blank lines
    try:
        header, first = next(records, None), next(records, None)
    except csv.Error:  # a field beyond the csv module's size limit: pandas read it already
        return
    if header is not None and first is not None and len(first) > len(header):
        raise InvalidArgumentError(
            f"row 1 of the CSV has {len(first)} fields but its header names {len(header)}; "
            "send exactly one value per header column in every row"
        )


def validated_json(payload: Any, model: ServedModel) -> dict[str, Any]:
    """The validated columns of an MLflow JSON body; rows as objects of numbers take the
    model's one-step cast (:meth:`~shipyard.serving.base.ServedModel.validate_records`)."""
    if type(payload) is dict and len(payload) == 1:
        rows = payload.get("dataframe_records", payload.get("instances", payload.get("inputs")))
        if type(rows) is list and rows and type(rows[0]) is dict:
            validated = model.validate_records(rows)
            if validated is not None:
                return validated
    return model.validate(json_columns(payload, model))


async def invocations_reply(models: ModelLookup, exchange: Exchange) -> Reply:
    """``POST /invocations``: the handler the fast path and the route share."""
    try:
        ref = exchange.query("model")
        served = models.resolve(ref) if ref else models.route(models.first())
        exchange.served_by(served)
        mime, problem = content_type_problem(exchange.header(b"content-type"))
        if problem is not None:
            return Reply(415, problem.encode(), b"text/plain; charset=utf-8")
        if mime == CONTENT_TYPE_CSV:
            validated = served.validate(csv_columns(exchange.body, served))
        else:
            validated = validated_json(parse_json(exchange.body), served)
        result = await served.predict(validated)
    except ShipyardError as exc:
        return mlflow_error(exc)
    exchange.record(served, validated, result)
    return Reply(200, dump_json({"predictions": result.predictions}))


@router.post("/invocations")
async def invocations(
    request: Request,
    model: str | None = None,  # noqa: ARG001 - documented here, read by the handler
) -> Response:
    """Score rows sent as MLflow JSON or CSV with the first (or ``?model=``) served model."""
    return await answer_route(request, invocations_reply)


async def ping(request: Request) -> Response:
    """200 once every model is loaded, 404 before (MLflow's health check)."""
    status = 200 if _models(request).ready() else 404
    return Response("\n", status, media_type=CONTENT_TYPE_JSON)


router.add_api_route("/ping", ping, methods=["GET"])
router.add_api_route("/health", ping, methods=["GET"])


@router.get("/version")
async def version() -> Response:
    """The server's version (MLflow answers its own version string here)."""
    try:
        text = metadata.version("shipyard")
    except metadata.PackageNotFoundError:
        text = "unknown"
    return Response(text, media_type=CONTENT_TYPE_JSON)
