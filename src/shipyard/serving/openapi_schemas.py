"""The wire formats of the model server's three protocols as JSON Schema, for its OpenAPI
document (:mod:`shipyard.serving.openapi`): request and answer bodies, and the error bodies.

Written from the protocols' own descriptions (native records / split, MLflow's scoring server,
the Open Inference Protocol v2 and Triton's binary tensor extension); that the server answers as
they say is checked by schemathesis against a running server (tests/serving/test_fuzz.py).
"""

from __future__ import annotations

from typing import Any

from shipyard.serving.auth import REFUSAL_TYPES

Schema = dict[str, Any]

#: Where a component schema is referred to from.
REF = "#/components/schemas/"

#: A cell of a row: a number, text, boolean or null (a missing value).
_CELL: Schema = {"type": ["number", "string", "boolean", "null"]}
_ROW: Schema = {
    "type": "object",
    "description": "One row: column name to value.",
    "additionalProperties": _CELL,
}
_ROWS: Schema = {"type": "array", "items": _ROW, "description": "Rows as records."}
_POSITIONAL: Schema = {
    "type": "array",
    "items": {"type": "array", "items": _CELL},
    "description": "Rows as lists of values, in column order.",
}
_PARAMETERS: Schema = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
_V2_DATATYPES = [
    "BOOL",
    *(f"{kind}{bits}" for kind in ("UINT", "INT") for bits in (8, 16, 32, 64)),
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
]


def _mlflow_form(key: str, schema: Schema) -> Schema:
    """An MLflow JSON body holding its rows under ``key`` (plus optional ``params``)."""
    return {
        "type": "object",
        "required": [key],
        "properties": {key: schema, "params": {"type": "object"}},
        "additionalProperties": False,
    }


COMPONENTS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "description": "shipyard's error body: one sentence saying what was wrong and how to "
        "fix it, the error's kind, and the request id (also in the X-Request-ID header).",
        "required": ["error", "type", "request_id"],
        "properties": {
            "error": {"type": "string"},
            "type": {"type": "string", "examples": ["InvalidArgumentError", "SchemaError"]},
            "request_id": {"type": "string"},
            "column": {"type": "string", "description": "The input column at fault (422)."},
        },
    },
    "AuthError": {
        "type": "object",
        "description": "A request the token check refused (401 no or unknown token, 403 a "
        "token without the route's scope, 503 tokens not refreshed for too long).",
        "required": ["error", "type", "request_id"],
        "properties": {
            "error": {"type": "string"},
            "type": {
                "type": "string",
                "enum": sorted(set(REFUSAL_TYPES.values())),
            },
            "request_id": {"type": "string"},
        },
    },
    "MlflowError": {
        "type": "object",
        "description": "MLflow's scoring-server error body.",
        "required": ["error_code", "message"],
        "properties": {
            "error_code": {
                "type": "string",
                "examples": ["BAD_REQUEST", "RESOURCE_DOES_NOT_EXIST", "INTERNAL_ERROR"],
            },
            "message": {"type": "string"},
            "stack_trace": {"type": ["string", "null"]},
        },
    },
    "V2Error": {
        "type": "object",
        "description": "The Open Inference Protocol's error body.",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Split": {
        "type": "object",
        "description": "pandas orient split: column names, then rows in that order.",
        "required": ["columns", "data"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": _POSITIONAL,
            "index": {"type": "array", "description": "Row labels (ignored)."},
        },
    },
    "NativeRequest": {
        "description": 'Rows as records (`[{"col": value}, ...]`), records under "records", '
        'or split (`{"columns": [...], "data": [[...], ...]}`).',
        "anyOf": [
            _ROWS,
            {
                "type": "object",
                "required": ["records"],
                "properties": {"records": _ROWS},
            },
            {"$ref": f"{REF}Split"},
        ],
    },
    "NativePrediction": {
        "type": "object",
        "required": ["model", "version", "request_id", "predictions"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "request_id": {"type": "string"},
            "predictions": {"type": "array", "description": "One prediction a row."},
            "probabilities": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "number"}},
                "description": "Classifiers: one probability a class, in `classes` order.",
            },
            "classes": {"type": "array"},
        },
    },
    "TfServingInput": {
        "description": "Rows as objects, rows as lists in signature order, the values of a "
        "one-column model, or an object of columns.",
        "anyOf": [
            _ROWS,
            _POSITIONAL,
            {"type": "array", "items": _CELL},
            {
                "type": "object",
                "additionalProperties": {"anyOf": [{"type": "array", "items": _CELL}, _CELL]},
            },
        ],
    },
    "MlflowRequest": {
        "description": "Exactly one of dataframe_split, dataframe_records, instances or "
        "inputs, plus optional params (accepted and ignored, as MLflow does).",
        "oneOf": [
            _mlflow_form(
                "dataframe_split",
                {
                    "type": "object",
                    "description": "pandas orient split; without columns, the signature's order.",
                    "required": ["data"],
                    "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "data": _POSITIONAL,
                        "index": {"type": "array"},
                    },
                },
            ),
            _mlflow_form("dataframe_records", _ROWS),
            _mlflow_form("instances", {"$ref": f"{REF}TfServingInput"}),
            _mlflow_form("inputs", {"$ref": f"{REF}TfServingInput"}),
        ],
    },
    "MlflowPrediction": {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": {"type": "array"}},
    },
    "V2Tensor": {
        "type": "object",
        "description": "One input tensor: a signature column (MLServer's pandas convention) or "
        "one [rows, columns] tensor for an all-numeric model. With the binary tensor "
        "extension, parameters.binary_data_size replaces data.",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": _V2_DATATYPES},
            "parameters": _PARAMETERS,
            "data": {"type": "array", "description": "Row-major values, flat or nested."},
        },
    },
    "V2InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": _PARAMETERS,
            "inputs": {"type": "array", "items": {"$ref": f"{REF}V2Tensor"}},
            "outputs": {
                "type": "array",
                "description": "The outputs wanted (predict, predict_proba); binary_data: true "
                "asks for one in binary.",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
                },
            },
        },
    },
    "V2InferResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype"],
                    "properties": {
                        "name": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "datatype": {"type": "string", "enum": _V2_DATATYPES},
                        "parameters": {"type": "object"},
                        "data": {"type": "array"},
                    },
                },
            },
        },
    },
    "V2ModelMetadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": {"$ref": f"{REF}V2TensorMetadata"}},
            "outputs": {"type": "array", "items": {"$ref": f"{REF}V2TensorMetadata"}},
        },
    },
    "V2TensorMetadata": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
}
