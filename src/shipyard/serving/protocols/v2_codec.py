"""The Open Inference Protocol v2 wire format (KServe V2, Triton, Seldon MLServer), framework-free.

:func:`decode_request` reads JSON tensors (``data`` flat or nested, row-major) and Triton's
binary tensor extension (raw little-endian bytes after the JSON, ``binary_data_size`` each; a
BYTES element is a 4-byte length + its bytes). Tabular input is one tensor per signature column
(MLServer's pandas convention) or, for an all-numeric model, one ``[rows, columns]`` tensor.

:func:`encode_response` gives the outputs ``predict`` (what ``predict`` returns) and, with
probabilities, ``predict_proba`` (FP64 ``[rows, classes]`` in the model's class order): the
names of MLServer's scikit-learn runtime; each JSON or binary as asked. Malformed bodies raise
:class:`InvalidArgumentError`; tensors that do not fit raise :class:`SchemaError` naming them.

The gRPC transport (:mod:`shipyard.serving.protocols.grpc`) uses the same pieces, so both say
the same: :func:`decode_tensor`, :func:`columns_from_tensors`, :func:`requested_outputs`,
:func:`prediction_outputs`, :func:`tensor_bytes` and :func:`model_metadata`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import orjson

from shipyard.core.exceptions import InvalidArgumentError, SchemaError
from shipyard.core.schema import Signature
from shipyard.serving.base import Prediction, ServedModel
from shipyard.serving.columns import MatrixColumns

#: The output holding what the model's ``predict`` returns.
PREDICT_OUTPUT = "predict"
#: The output holding class probabilities ``[rows, classes]`` (classifiers only).
PROBA_OUTPUT = "predict_proba"
#: The header saying where the JSON part of a binary-extension body ends.
HEADER_LENGTH = "Inference-Header-Content-Length"

_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    **{f"{k.upper()}{b}": np.dtype(f"{k}{b}") for k in ("uint", "int") for b in (8, 16, 32, 64)},
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(np.float32),  # numpy has no bfloat16: BF16 is widened on decoding
    "BYTES": np.dtype(object),
}
_BY_NUMPY = {dtype: name for name, dtype in _NUMPY.items() if name not in ("BF16", "BYTES")}
#: Every datatype the protocol names.
DATATYPES = tuple(_NUMPY)
_INTEGER = frozenset(n for n in _NUMPY if n.startswith(("INT", "UINT")))
_FLOAT = frozenset(("FP16", "FP32", "FP64", "BF16"))
_NUMERIC = _INTEGER | _FLOAT
_LENGTH = struct.Struct("<I")
_SIGNATURE_NUMERIC = {str(dtype): name for dtype, name in _BY_NUMPY.items() if name != "BOOL"}
_Tensor = tuple[str, str, np.ndarray]  # name, datatype, values


class RequestedOutput(NamedTuple):
    """An entry of the request's ``outputs``: its name, and binary (True/False) or unsaid (None)."""

    name: str
    binary: bool | None = None


class DecodedRequest(NamedTuple):
    """What an ``/infer`` body asks for."""

    columns: dict[str, np.ndarray]
    request_id: str | None
    requested_outputs: list[RequestedOutput] | None
    binary_outputs_wanted: bool


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The v2 datatype for a numpy dtype; text, objects and datetimes are BYTES."""
    if dtype.kind in "OUSMm":
        return "BYTES"
    try:
        return _BY_NUMPY[dtype.newbyteorder("=")]
    except KeyError as exc:
        raise InvalidArgumentError(f"numpy dtype {dtype} has no v2 datatype") from exc


def signature_datatype(dtype: str) -> str:
    """The v2 datatype of a signature dtype ("float64" → FP64, "string" → BYTES, ...)."""
    if dtype in _SIGNATURE_NUMERIC:
        return _SIGNATURE_NUMERIC[dtype]
    return "BOOL" if dtype == "bool" else "BYTES"  # string, category, datetime


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


# -- decoding ----------------------------------------------------------------------------------


def decode_request(
    body: bytes, header_length: int | None, signature: Signature | None
) -> DecodedRequest:
    """Parse an ``/infer`` body into signature columns (one 1-D array each, equal lengths).

    ``header_length`` is the ``Inference-Header-Content-Length`` header (None when absent:
    the whole body is JSON). Without a signature, every tensor is a column of its name.
    """
    if header_length is not None and not 0 < header_length <= len(body):
        raise InvalidArgumentError(
            f"{HEADER_LENGTH} is {header_length}; it must be the JSON's length (1..{len(body)})"
        )
    split = len(body) if header_length is None else header_length
    try:
        doc = orjson.loads(body[:split])
    except orjson.JSONDecodeError as exc:
        raise InvalidArgumentError(f"the request body is not valid JSON: {exc}") from exc
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgumentError("expected a JSON object with a non-empty list 'inputs'")
    tensors: list[_Tensor] = []
    offset = split
    for index, raw in enumerate(inputs):
        name, datatype, shape, size = _tensor_header(raw, index)
        if size is not None:
            chunk = body[offset : offset + size]
            if len(chunk) != size:
                raise InvalidArgumentError(
                    f"input tensor {name!r} declares {size} binary bytes but {len(chunk)} follow"
                )
            offset += size
            tensors.append((name, datatype, _from_binary(name, datatype, shape, chunk)))
        elif "data" in raw:
            tensors.append((name, datatype, _from_json(name, datatype, shape, raw["data"])))
        else:
            raise _bad(name, "has neither 'data' nor parameters.binary_data_size")
    if offset != len(body):
        raise InvalidArgumentError(
            f"{len(body) - offset} bytes follow the last tensor; binary_data_size must add up"
        )
    request_id, params = doc.get("id"), doc.get("parameters")
    binary = isinstance(params, dict) and params.get("binary_data_output") is True
    request_id = str(request_id) if request_id is not None else None
    columns = columns_from_tensors(tensors, signature)
    return DecodedRequest(columns, request_id, requested_outputs(doc.get("outputs")), binary)


def _bad(name: str, problem: str) -> SchemaError:
    return SchemaError(f"input tensor {name!r} {problem}", column=name)


def _tensor_header(raw: Any, index: int) -> tuple[str, str, list[int], int | None]:
    """Name, datatype, shape and binary size of one request input, checked."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise InvalidArgumentError(
            f"input #{index} must be an object with a string 'name', 'shape' and 'datatype'"
        )
    name, datatype, shape = raw["name"], raw.get("datatype"), raw.get("shape")
    if datatype not in _NUMPY:
        raise _bad(name, f"has datatype {datatype!r}; expected one of {', '.join(DATATYPES)}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _bad(name, f"has shape {shape!r}; expected [rows] or [rows, columns]")
    params = raw.get("parameters")
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None and (type(size) is not int or size < 0):
        raise InvalidArgumentError(f"input tensor {name!r}: binary_data_size {size!r} is no size")
    return name, datatype, shape, size


def _from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    """A tensor from JSON ``data`` (flat or nested), checked against datatype and shape."""
    values = data if isinstance(data, list) else [data]
    if datatype == "BYTES":
        flat = _flatten(values)
        bad = next((v for v in flat if v is not None and not isinstance(v, str)), None)
        if bad is not None:
            raise _bad(name, f"is BYTES but holds {bad!r} ({type(bad).__name__}); send strings")
        return _reshape(name, np.array(flat, dtype=object), shape)
    try:
        array = np.asarray(values)
    except ValueError as exc:
        raise _bad(name, "has ragged nested data; every row needs the same length") from exc
    return _reshape(name, _cast_numeric(name, datatype, array, values), shape)


def _flatten(values: list[Any]) -> list[Any]:
    """Row-major flattening of nested lists (returned unchanged when already flat)."""
    if not any(isinstance(v, list) for v in values):
        return values
    out: list[Any] = []
    for value in values:
        out.extend(_flatten(value) if isinstance(value, list) else [value])
    return out


def _cast_numeric(name: str, datatype: str, array: np.ndarray, values: list[Any]) -> np.ndarray:
    """Cast parsed JSON ``values`` (``array``) to ``datatype``, refusing lossy or mistyped ones."""
    if array.dtype.kind == "O":  # nulls, or mixed values
        flat = array.ravel().tolist()
        if any(v is None for v in flat):
            if datatype not in _FLOAT:
                raise _bad(name, f"is {datatype} but holds null; only FP tensors carry nulls")
            flat = [math.nan if v is None else v for v in flat]
        try:
            array = np.asarray(flat).reshape(array.shape)
        except (ValueError, TypeError) as exc:
            raise _wrong(name, datatype, "mixed values") from exc
    kind = array.dtype.kind
    if datatype != "BOOL" and kind in "iuf" and _holds_bool(values, array.ndim):
        raise _wrong(name, datatype, "true/false")  # numpy reads [1, true] as [1, 1]
    if kind not in "biuf" or (datatype == "BOOL") != (kind == "b"):
        got = "text" if kind in "US" else "true/false" if kind == "b" else "numbers"
        raise _wrong(name, datatype, got if kind in "USbiuf" else "mixed values")
    target = _NUMPY[datatype]
    if array.dtype == target:
        return array
    try:
        with np.errstate(over="raise", invalid="raise"):
            if datatype not in _INTEGER:
                return array.astype(target, copy=False)
            if kind == "f" and not np.all(np.mod(array, 1) == 0):
                raise _wrong(name, datatype, "fractional numbers")
            info = np.iinfo(target)
            if array.size and (array.min() < info.min or array.max() > info.max):
                raise OverflowError
            # From the JSON integers themselves: float64 rounds beyond 2**53.
            return np.asarray(values, dtype=target) if kind == "f" else array.astype(target)
    except (OverflowError, FloatingPointError) as exc:
        raise _bad(name, f"is {datatype} but holds values outside its range") from exc


def _holds_bool(values: list[Any], depth: int) -> bool:
    """Whether the nested lists ``values`` (``depth`` levels: the array's ``ndim``) hold a
    ``true`` / ``false`` among numbers; C-speed type sets, one per innermost list."""
    if depth <= 1:
        return bool in set(map(type, values))
    return any(_holds_bool(v, depth - 1) for v in values)


def _wrong(name: str, datatype: str, got: str) -> SchemaError:
    return _bad(name, f"is declared {datatype} but holds {got}; make datatype and data match")


def _from_binary(name: str, datatype: str, shape: list[int], chunk: bytes) -> np.ndarray:
    """A tensor from its raw little-endian bytes."""
    if datatype == "BYTES":
        items: list[str] = []
        offset = 0
        try:
            while offset < len(chunk):
                (length,) = _LENGTH.unpack_from(chunk, offset)
                if offset + 4 + length > len(chunk):
                    raise ValueError(f"an element of {length} bytes runs past the end")
                items.append(chunk[offset + 4 : offset + 4 + length].decode("utf-8"))
                offset += 4 + length
        except (struct.error, ValueError) as exc:
            raise _bad(name, f"has BYTES data that is not 4-byte lengths + UTF-8 ({exc})") from exc
        return _reshape(name, np.array(items, dtype=object), shape)
    wire = np.dtype("<u2") if datatype == "BF16" else _NUMPY[datatype].newbyteorder("<")
    if len(chunk) != (expected := math.prod(shape) * wire.itemsize):
        raise _bad(name, f"has shape {shape} of {datatype} ({expected} bytes) but {len(chunk)}")
    raw = np.frombuffer(chunk, dtype=wire)
    if datatype == "BF16":  # bfloat16 is the upper half of a float32
        return (raw.astype(np.uint32) << 16).view(np.float32).reshape(shape)
    if datatype == "BOOL" and raw.size and raw.view(np.uint8).max() > 1:
        raise _bad(name, "is BOOL but holds bytes other than 0 and 1")
    return raw.astype(_NUMPY[datatype], copy=True).reshape(shape)


def _reshape(name: str, array: np.ndarray, shape: list[int]) -> np.ndarray:
    if array.size != (count := math.prod(shape)):
        raise _bad(name, f"has shape {shape} ({count} elements) but its data holds {array.size}")
    return array.reshape(shape)


def requested_outputs(raw: Any) -> list[RequestedOutput] | None:
    """The request's ``outputs`` (``[{"name", "parameters"?}, ...]``), checked; None if absent."""
    if raw is None:
        return None
    wanted: list[RequestedOutput] = []
    for entry in raw if isinstance(raw, list) else [None]:
        params = entry.get("parameters") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidArgumentError(f"'outputs' must list objects with a 'name'; got {entry!r}")
        if isinstance(params, dict) and params.get("classification"):
            raise InvalidArgumentError(
                f"output {entry['name']!r} asks for the classification extension, which this "
                f"server does not offer; request {PROBA_OUTPUT!r} for class probabilities"
            )
        binary = params.get("binary_data") if isinstance(params, dict) else None
        wanted.append(RequestedOutput(entry["name"], binary if isinstance(binary, bool) else None))
    return wanted


def decode_tensor(
    name: str,
    datatype: str,
    shape: Sequence[int],
    *,
    raw: bytes | None = None,
    values: list[Any] | None = None,
) -> np.ndarray:
    """One input tensor sent outside a JSON body (the gRPC protocol), checked like one inside.

    ``raw``: its little-endian row-major bytes (``raw_input_contents``); else ``values``: its
    elements, flat (the typed ``contents``; BYTES elements as ``str``).
    """
    header = {"name": name, "datatype": datatype, "shape": list(shape)}
    name, datatype, dims, _ = _tensor_header(header, 0)
    if raw is not None:
        return _from_binary(name, datatype, dims, raw)
    return _from_json(name, datatype, dims, values if values is not None else [])


# -- tensors to columns ------------------------------------------------------------------------


def columns_from_tensors(
    tensors: Sequence[tuple[str, str, np.ndarray]], signature: Signature | None
) -> dict[str, np.ndarray]:
    """Map request tensors (name, datatype, values) onto signature columns: one per column,
    or one 2-D numeric tensor; without a signature, every tensor is a column of its name."""
    names = signature.columns if signature is not None else []
    known = set(names)
    unknown = next((t[0] for t in tensors if t[0] not in known), None) if known else None
    if signature is not None and unknown is not None:
        if len(tensors) == 1:
            return _split_matrix(tensors[0], signature)
        raise _bad(
            unknown,
            f"is not a column of the model; send one tensor per column ({', '.join(names)}), "
            "or a single 2-D tensor when every column is numeric",
        )
    columns: dict[str, np.ndarray] = {}
    for name, datatype, array in tensors:
        if name in columns:
            raise _bad(name, "appears twice; send it once")
        if signature is not None and names:
            _check_datatype(name, datatype, signature.column(name).dtype)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise _bad(name, f"has shape {list(array.shape)}; a column is [rows] or [rows, 1]")
        if columns and len(array) != len(next(iter(columns.values()))):
            first = next(iter(columns))
            raise _bad(name, f"has {len(array)} rows but {first!r} has {len(columns[first])}")
        columns[name] = array
    missing = next((c for c in names if c not in columns), None)
    if signature is not None and missing is not None:
        wanted = signature_datatype(signature.column(missing).dtype)
        raise _bad(missing, f"({wanted}) is missing; the model takes {', '.join(names)}")
    return columns


def _check_datatype(name: str, datatype: str, dtype: str) -> None:
    """Refuse a tensor whose datatype cannot carry the signature column's values."""
    expected = signature_datatype(dtype)
    if not (datatype in _NUMERIC if expected in _NUMERIC else datatype == expected):
        raise _bad(name, f"is {datatype} but column {name!r} is {dtype}; send it as {expected}")


def _split_matrix(tensor: _Tensor, signature: Signature) -> dict[str, np.ndarray]:
    """Columns of a single ``[rows, columns]`` tensor, in signature order."""
    (name, datatype, array), names = tensor, signature.columns
    text = next((c for c in signature.inputs if not c.is_numeric), None)
    if text is not None:
        raise _bad(
            name,
            f"is not a column of the model, and one tensor cannot carry column {text.name!r} "
            f"({text.dtype}); send one tensor per column: {', '.join(names)}",
        )
    if datatype not in _NUMERIC:
        raise _bad(name, f"is {datatype} but the model's columns are numeric; send INT/UINT/FP")
    if array.ndim == 1 and len(names) == 1:
        return {names[0]: array}
    if array.ndim != 2 or array.shape[1] != len(names):
        raise _bad(
            name,
            f"has shape {list(array.shape)} but the model takes [-1, {len(names)}]: "
            f"one column per feature, in order {', '.join(names)}",
        )
    if array.dtype == np.float64:  # the matrix itself: the caster takes it in one step
        return MatrixColumns(array, names)
    return {column: array[:, i] for i, column in enumerate(names)}


# -- encoding ----------------------------------------------------------------------------------


def encode_response(
    model_name: str,
    version: int | str,
    request_id: str | None,
    prediction: Prediction,
    requested_outputs: Sequence[RequestedOutput] | None,
    binary: bool,
) -> tuple[bytes, dict[str, str]]:
    """The ``/infer`` response body and its headers.

    Without ``requested_outputs`` every output is returned, binary when ``binary`` is true
    (Triton's ``binary_data_output``); a requested output's own ``binary_data`` wins.
    """
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for wanted, array, datatype in prediction_outputs(prediction, requested_outputs):
        entry: dict[str, Any] = {"name": wanted.name, "datatype": datatype, "shape": array.shape}
        if binary if wanted.binary is None else wanted.binary:
            chunks.append(tensor_bytes(array, datatype))
            entry["parameters"] = {"binary_data_size": len(chunks[-1])}
        elif datatype == "BYTES":
            entry["data"] = [v if isinstance(v, str) else str(v) for v in array.ravel().tolist()]
        else:
            entry["data"] = np.ascontiguousarray(array.ravel())
        outputs.append(entry)
    doc = {"model_name": model_name, "model_version": str(version), "outputs": outputs}
    if request_id is not None:
        doc["id"] = request_id
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return b"".join([header, *chunks]), headers


def prediction_outputs(
    prediction: Prediction, requested: Sequence[RequestedOutput] | None
) -> list[tuple[RequestedOutput, np.ndarray, str]]:
    """The outputs an answer carries, in order: each one ``requested`` (None: every output),
    its values and its v2 datatype. An output the model does not give is refused."""
    predict = np.asarray(prediction.predictions)
    if predict.dtype.kind == "O":  # labels as Python objects: numbers become numeric, text BYTES
        predict = np.asarray(predict.tolist())
    available = {PREDICT_OUTPUT: predict}
    if prediction.probabilities is not None:
        available[PROBA_OUTPUT] = np.asarray(prediction.probabilities, dtype=np.float64)
    chosen: list[tuple[RequestedOutput, np.ndarray, str]] = []
    for wanted in requested or [RequestedOutput(name) for name in available]:
        if wanted.name not in available:
            raise InvalidArgumentError(
                f"unknown output {wanted.name!r}: the model gives {', '.join(available)}"
            )
        array = available[wanted.name]
        chosen.append((wanted, array, datatype_of(array.dtype)))
    return chosen


def tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    """Raw little-endian bytes of a tensor (BYTES: 4-byte length + UTF-8 per element)."""
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts: list[bytes] = []
    for value in array.ravel().tolist():
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts += [_LENGTH.pack(len(raw)), raw]
    return b"".join(parts)
