"""The model server's OpenAPI document (``/openapi.json``, ``/docs``), made to tell the truth.

FastAPI generates the document from the routes, but the prediction routes read their bodies
raw (the ASGI fast path answers them before FastAPI, :mod:`shipyard.serving.protocols.fastpath`),
errors are shipyard's body rather than FastAPI's ``{"detail": ...}``, and the token check is a
middleware, so the generated document would list no request body, only 200 / 422, no security
and JSON for everything. :func:`install_openapi` replaces ``app.openapi`` with a function that
takes FastAPI's document and adds, per route:

- the request bodies: native records / split JSON, MLflow's four JSON forms and CSV, and the
  Open Inference Protocol v2 tensors (JSON, and Triton's binary tensor extension);
- every status a route answers with its body: shipyard's ``{"error", "type", "request_id"}``,
  MLflow's ``{"error_code", "message"}`` on ``/invocations``, the protocol's ``{"error"}`` on
  ``/v2``; 401 / 403 / 503 from the token check when auth is on;
- the HTTP bearer security scheme, required by every route but the health checks when the
  server runs with auth (``x-shipyard-scope`` names the scope each route needs either way);
- the media types really sent: Prometheus text on ``/metrics``; on ``/ping``, ``/health`` and
  ``/version`` MLflow's plain-text bodies (``text/plain``) beside the ``application/json``
  label MLflow's scoring server puts on them (without a schema: the body is not JSON);
  CSV / Parquet / Arrow next to JSON on the data API.

A route that reads its body raw (to parse it off the event loop) documents it with FastAPI's
``openapi_extra``: the request body, and under :data:`COMPONENTS_KEY` the schemas it refers to.

The scopes come from :func:`~shipyard.serving.auth.required_scope`, the rule the server
enforces, so the document cannot disagree with it. This module knows the protocols' wire
formats (as documentation, in :mod:`shipyard.serving.openapi_schemas`) but imports none of them.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST

from shipyard.core.refs import NAME_RE, ZONES
from shipyard.serving.auth import required_scope
from shipyard.serving.openapi_schemas import COMPONENTS, REF, Schema

JSON = "application/json"
SECURITY_SCHEME = "bearerAuth"
#: An operation's ``openapi_extra`` key holding component schemas its request body refers to
#: (a route that reads its body raw, so FastAPI does not list the model): moved to
#: ``components.schemas``.
COMPONENTS_KEY = "x-components"


def _ref(name: str) -> Schema:
    return {"$ref": f"{REF}{name}"}


def _json(description: str, schema: Schema | None = None) -> Schema:
    """A response answering JSON (with ``schema`` when given)."""
    content: Schema = {JSON: {"schema": schema} if schema is not None else {}}
    return {"description": description, "content": content}


def _error(description: str, name: str = "Error") -> Schema:
    return _json(description, _ref(name))


TEXT = "text/plain"
#: MLflow's ``/ping`` and ``/health`` body: one newline.
_NEWLINE: Schema = {"type": "string", "enum": ["\n"]}
#: MLflow's ``/version`` body: the version, as bare text.
_VERSION_TEXT: Schema = {"type": "string", "minLength": 1, "examples": ["0.1.0"]}


def _mlflow_body_text(description: str, body: Schema) -> Schema:
    """MLflow's ``/ping``, ``/health`` and ``/version`` answers: a plain-text ``body`` that
    ``mlflow models serve`` labels ``Content-Type: application/json`` (and so does shipyard,
    for MLflow's clients and probes). The text is described as ``text/plain``; the label is
    listed as ``application/json`` without a schema, since the body is not a JSON document."""
    return {
        "description": f"{description} The body is plain text (described as text/plain), "
        "not JSON, but it is sent with Content-Type: application/json, as MLflow's scoring "
        "server sends it; read it as text.",
        "content": {
            JSON: {},
            TEXT: {"schema": body},
        },
    }


_OBJECT: Schema = {"type": "object"}
_TABLE_FORMATS: Schema = {
    "description": "The rows, in the format asked for (format=, else the Accept header, "
    "else JSON); the X-Next-Cursor header (and next_cursor in JSON) points at the next page.",
    "content": {
        JSON: {"schema": _OBJECT},
        "text/csv": {"schema": {"type": "string"}},
        "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_BAD = _error("The request is malformed (the message says what to change).")
_MISSING = _error("No such model, version, alias or dataset.")
_BIG = _error(
    "The body, or what it inflates to, or its rows, columns or text are above the "
    "server's limits ([serving.limits]; the message names the setting)."
)
_UNFIT = _error("The rows do not fit the model's signature (column names the culprit).")
_FAILED = _error("The model failed on valid input.")
_AMBIGUOUS = _error("The dataset name is in several zones: add ?zone=.")
_PATH_TYPE = _error("A path or query parameter has the wrong type.")

_NATIVE: Schema = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": _ref("NativeRequest")}},
    },
    "responses": {
        "200": _json("The predictions (and class probabilities).", _ref("NativePrediction")),
        "400": _BAD,
        "404": _MISSING,
        "413": _BIG,
        "422": _UNFIT,
        "500": _FAILED,
    },
}
_MLFLOW: Schema = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": _ref("MlflowRequest")},
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "A header row of column names, then one line a row.",
                }
            },
        },
    },
    "responses": {
        "200": _json("The predictions.", _ref("MlflowPrediction")),
        "400": _error(
            "BAD_REQUEST: the body is malformed or does not fit the signature.", "MlflowError"
        ),
        "404": _error("RESOURCE_DOES_NOT_EXIST: ?model= names no served model.", "MlflowError"),
        "413": {
            "description": "The body is above the server's max_body_bytes.",
            "content": {JSON: {"schema": {"anyOf": [_ref("Error"), _ref("MlflowError")]}}},
        },
        "415": {
            "description": "Not application/json or text/csv (charset=utf-8 only), as MLflow.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        "500": _error("INTERNAL_ERROR: the model failed.", "MlflowError"),
    },
}
_V2_LENGTH = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "description": "Binary tensor extension: the length of the JSON part; raw tensor bytes "
    "follow it in the body.",
    "schema": {"type": "integer", "minimum": 0},
}
_V2_INFER: Schema = {
    "parameters": [_V2_LENGTH],
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": _ref("V2InferRequest")},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "Binary tensor extension: the JSON request, then the tensors' "
                "raw little-endian bytes (Inference-Header-Content-Length says where the JSON "
                "ends).",
            },
        },
    },
    "responses": {
        "200": {
            "description": "The outputs: JSON, or with binary outputs asked for, the JSON "
            "part then raw bytes (Inference-Header-Content-Length header).",
            "content": {
                JSON: {"schema": _ref("V2InferResponse")},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "400": _error("The request is malformed.", "V2Error"),
        "404": _error("No such model or version is served.", "V2Error"),
        "413": _error("The request is above the server's limits.", "V2Error"),
        "422": _error("The tensors do not fit the model's signature.", "V2Error"),
        "500": _error("The model failed.", "V2Error"),
    },
}
_V2_MODEL = {
    "400": _error("The version is not a number.", "V2Error"),
    "404": _error("No such model or version is served.", "V2Error"),
}

#: What FastAPI cannot know about each route: keyed by method and path template.
ROUTES: dict[tuple[str, str], Schema] = {
    ("get", "/health/live"): {"responses": {"200": _json("The process is up.", _OBJECT)}},
    ("get", "/health/ready"): {
        "responses": {
            "200": _json("Every model is loaded and warm.", _OBJECT),
            "503": _json("Still loading, or the API tokens are stale (status says).", _OBJECT),
        }
    },
    ("get", "/metrics"): {
        "responses": {
            "200": {
                "description": "Prometheus text exposition.",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            }
        }
    },
    ("get", "/v1/models"): {"responses": {"200": _json("The served model versions.", _OBJECT)}},
    ("post", "/v1/models/{ref}/predict"): _NATIVE,
    ("post", "/v1/models/{name}/versions/{version}/predict"): _NATIVE,
    ("post", "/v1/models/{name}/aliases/{alias}/predict"): _NATIVE,
    ("get", "/v1/predictions"): {"responses": {"200": _TABLE_FORMATS, "400": _BAD}},
    ("get", "/v1/predictions/jobs"): {
        "responses": {"200": _json("Batch jobs.", _OBJECT), "400": _BAD}
    },
    ("get", "/v1/datasets"): {"responses": {"200": _json("Datasets.", _OBJECT), "400": _BAD}},
    ("get", "/v1/datasets/{name}"): {
        "responses": {
            "200": _json("A dataset.", _OBJECT),
            "400": _BAD,
            "404": _MISSING,
            "409": _AMBIGUOUS,
        }
    },
    ("get", "/v1/datasets/{name}/versions/{version}"): {
        "responses": {
            "200": _json("A dataset version.", _OBJECT),
            "400": _BAD,
            "404": _MISSING,
            "409": _AMBIGUOUS,
        }
    },
    ("get", "/v1/datasets/{name}/versions/{version}/rows"): {
        "responses": {"200": _TABLE_FORMATS, "400": _BAD, "404": _MISSING, "409": _AMBIGUOUS}
    },
    ("post", "/v1/feedback"): {
        "responses": {
            "400": _BAD,
            "404": _error("No registered model of that name."),
            "409": _error("A label for that prediction is already stored with another value."),
            "413": _BIG,
        }
    },
    ("post", "/invocations"): _MLFLOW,
    ("get", "/ping"): {
        "responses": {
            "200": _mlflow_body_text("Loaded (a newline).", _NEWLINE),
            "404": _mlflow_body_text("Still loading (a newline).", _NEWLINE),
        }
    },
    ("get", "/health"): {
        "responses": {
            "200": _mlflow_body_text("Loaded (a newline).", _NEWLINE),
            "404": _mlflow_body_text("Still loading (a newline).", _NEWLINE),
        }
    },
    ("get", "/version"): {
        "responses": {"200": _mlflow_body_text("The shipyard version.", _VERSION_TEXT)}
    },
    ("get", "/v2/health/live"): {"responses": {"200": _json("The process answers.", _OBJECT)}},
    ("get", "/v2/health/ready"): {
        "responses": {
            "200": _json("Every model is ready.", _OBJECT),
            "503": _json("Not ready yet.", _OBJECT),
        }
    },
    ("get", "/v2"): {"responses": {"200": _json("Server metadata.", _OBJECT)}},
    ("get", "/v2/models/{name}"): {
        "responses": {"200": _json("Model metadata.", _ref("V2ModelMetadata")), **_V2_MODEL}
    },
    ("get", "/v2/models/{name}/versions/{version}"): {
        "responses": {"200": _json("Model metadata.", _ref("V2ModelMetadata")), **_V2_MODEL}
    },
    ("get", "/v2/models/{name}/ready"): {
        "responses": {"200": _json("The model is ready.", _OBJECT), **_V2_MODEL}
    },
    ("get", "/v2/models/{name}/versions/{version}/ready"): {
        "responses": {"200": _json("The version is ready.", _OBJECT), **_V2_MODEL}
    },
    ("post", "/v2/models/{name}/infer"): _V2_INFER,
    ("post", "/v2/models/{name}/versions/{version}/infer"): _V2_INFER,
}

_AUTH_RESPONSES: dict[str, Schema] = {
    "401": {
        "description": "No token, or an unknown or revoked one.",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        "content": {JSON: {"schema": _ref("AuthError")}},
    },
    "403": _error("The token lacks the scope this route needs (x-shipyard-scope).", "AuthError"),
    "503": _error("The API tokens could not be refreshed for too long.", "AuthError"),
}


_VERSION: Schema = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
_TIME: Schema = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]
}
#: The rules the data API (``/v1/predictions``, ``/v1/datasets``) enforces on its parameters,
#: which it reads as text to answer a wrong one with its own 400: by parameter name.
DATA_PARAMETERS: dict[str, Schema] = {
    "version": _VERSION,
    "limit": {"type": "integer", "minimum": 1, "maximum": 100_000},
    "zone": {"type": "string", "enum": list(ZONES)},
    "format": {"type": "string", "enum": ["json", "csv", "parquet", "arrow"]},
    "source": {"type": "string", "enum": ["batch", "online"]},
    "since": _TIME,
    "until": _TIME,
    "name": {"type": "string", "pattern": NAME_RE.pattern},
}
#: Parameters read with surrounding blanks stripped (so a blank one is left out, too).
_STRIPPED = frozenset(("version", "limit", "since", "until"))
_DATA_PREFIXES = ("/v1/predictions", "/v1/datasets")
_BLANK: Schema = {"type": "string", "pattern": r"^\s*$"}
_EMPTY: Schema = {"type": "string", "maxLength": 0}


def build_openapi(app: FastAPI, *, auth: bool) -> dict[str, Any]:
    """``app``'s OpenAPI document, completed: bodies, every status, security, media types."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(copy.deepcopy(COMPONENTS))
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: shipyard tokens create NAME --scope read|predict|admin. "
            "Enforced when the server runs with --auth ([serving] auth = true); health checks "
            "stay open.",
        }
    }
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            schemas.update(operation.pop(COMPONENTS_KEY, {}))
            _complete(operation, method, path, auth=auth)
    return doc


def _complete(operation: Schema, method: str, path: str, *, auth: bool) -> None:
    """Fill in one operation from :data:`ROUTES` and the token rule."""
    extra = copy.deepcopy(ROUTES.get((method, path), {}))
    generated = operation.get("responses", {})
    has_params = any(p.get("in") in ("path", "query") for p in operation.get("parameters", ()))
    responses: dict[str, Schema] = {}
    if "200" in generated and "200" not in extra.get("responses", {}):
        responses["200"] = generated["200"]
    if has_params and not _only_text_params(operation):
        responses["422"] = _PATH_TYPE
    responses.update(extra.get("responses", {}))
    for parameter in operation.get("parameters", ()):
        _refine(parameter, path)
    if "parameters" in extra:
        operation["parameters"] = [*operation.get("parameters", ()), *extra["parameters"]]
    if "requestBody" in extra:
        operation["requestBody"] = extra["requestBody"]
    scope = required_scope(method.upper(), path)
    if scope is None:
        operation["security"] = []
    else:
        operation["x-shipyard-scope"] = scope
        if auth:
            operation["security"] = [{SECURITY_SCHEME: []}]
            responses.update(copy.deepcopy(_AUTH_RESPONSES))
        else:
            operation["security"] = []
    operation["responses"] = dict(sorted(responses.items()))


def _refine(parameter: Schema, path: str) -> None:
    """Give a parameter the server reads as text the rule the server enforces on it."""
    name, where = parameter["name"], parameter.get("in")
    if path.startswith("/v2/models/") and name == "version" and where == "path":
        parameter["schema"] = {"type": "integer"}  # not a number: 400 in the protocol's body
    elif path.startswith(_DATA_PREFIXES) and name in DATA_PARAMETERS:
        rule = copy.deepcopy(DATA_PARAMETERS[name])
        # an empty (or blank) query parameter means the parameter is left out
        absent = _BLANK if name in _STRIPPED else _EMPTY
        parameter["schema"] = rule if where == "path" else {"anyOf": [rule, absent]}


def _only_text_params(operation: Schema) -> bool:
    """Whether every path and query parameter takes any text (FastAPI can never answer 422)."""
    for parameter in operation.get("parameters", ()):
        if parameter.get("in") not in ("path", "query"):
            continue
        schema = parameter.get("schema", {})
        kinds = [schema.get("type")] + [s.get("type") for s in schema.get("anyOf", ())]
        if any(kind not in ("string", "null", None) for kind in kinds):
            return False
    return True


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (and in ``/docs``), built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            state = getattr(app.state, "server", None)
            auth = state is not None and state.auth is not None
            app.openapi_schema = build_openapi(app, auth=auth)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
