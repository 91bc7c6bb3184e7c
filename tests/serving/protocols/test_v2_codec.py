"""The Open Inference Protocol v2 codec: every datatype, JSON and binary, tensors to columns.

Request bodies are built by hand and with ``tritonclient.http`` (its public
``generate_request_body`` / ``parse_response_body``), so the codec is checked against the
reference client's own encoding of the binary tensor extension.
"""

from __future__ import annotations

import struct
from typing import Any

import ml_dtypes
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import serialize_byte_tensor, triton_to_np_dtype

from shipyard.core.exceptions import InvalidArgumentError, SchemaError, ShipyardError
from shipyard.core.schema import ColumnSpec, OutputSpec, Signature
from shipyard.serving.base import Prediction
from shipyard.serving.protocols.v2_codec import (
    DATATYPES,
    HEADER_LENGTH,
    PREDICT_OUTPUT,
    PROBA_OUTPUT,
    RequestedOutput,
    datatype_of,
    decode_request,
    encode_response,
    signature_datatype,
)

MIXED = Signature(
    inputs=(
        ColumnSpec("tenure", "int64"),
        ColumnSpec("charges", "float64", nullable=True),
        ColumnSpec("plan", "string", categories=("basic", "plus", "pro")),
    ),
    outputs=OutputSpec("int64", classes=(0, 1)),
)
NUMERIC = Signature(
    inputs=(ColumnSpec("a", "float64"), ColumnSpec("b", "float32"), ColumnSpec("c", "int64"))
)

SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([True, False, True]),
    "UINT8": np.array([0, 7, 255], dtype=np.uint8),
    "UINT16": np.array([0, 7, 65535], dtype=np.uint16),
    "UINT32": np.array([0, 7, 2**32 - 1], dtype=np.uint32),
    "UINT64": np.array([0, 7, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 0, 127], dtype=np.int8),
    "INT16": np.array([-(2**15), 0, 2**15 - 1], dtype=np.int16),
    "INT32": np.array([-(2**31), 0, 2**31 - 1], dtype=np.int32),
    "INT64": np.array([-(2**63), 0, 2**63 - 1], dtype=np.int64),
    "FP16": np.array([0.5, -1.25, 65504.0], dtype=np.float16),
    "FP32": np.array([0.1, -2.5, 3.4e38], dtype=np.float32),
    "FP64": np.array([0.1, -2.5, 1e300]),
    "BF16": np.array([0.5, -1.0, 3.0], dtype=ml_dtypes.bfloat16),
    "BYTES": np.array(["basic", "", "prö"], dtype=object),
}


def body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    """A JSON request body with ``inputs``."""
    return orjson.dumps({"inputs": list(inputs), **extra})


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    """One JSON input tensor."""
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def triton_body(arrays: dict[str, np.ndarray], binary: bool = True) -> tuple[bytes, int | None]:
    """The request ``tritonclient.http`` sends for ``arrays`` (binary by default)."""
    inputs = []
    for name, array in arrays.items():
        datatype = "BF16" if array.dtype == ml_dtypes.bfloat16 else datatype_of(array.dtype)
        inputs.append(triton.InferInput(name, list(array.shape), datatype))
        inputs[-1].set_data_from_numpy(array, binary_data=binary)
    payload, json_size = triton.InferenceServerClient.generate_request_body(inputs)
    return payload, json_size


# -- datatypes -----------------------------------------------------------------------------


def test_every_protocol_datatype_is_known() -> None:
    assert set(DATATYPES) == set(SAMPLES)


@pytest.mark.parametrize(
    ("datatype", "binary"),
    # tritonclient sends BF16 only as binary data
    [(d, b) for d in sorted(SAMPLES) for b in (True, False) if b or d != "BF16"],
)
def test_every_datatype_decodes_as_tritonclient_encodes_it(datatype: str, binary: bool) -> None:
    sample = SAMPLES[datatype]
    payload, json_size = triton_body({"x": sample}, binary=binary)
    assert (json_size is not None) == binary

    columns = decode_request(payload, json_size, None).columns

    expected = sample.astype(np.float32) if datatype == "BF16" else sample
    assert columns["x"].dtype == (np.float32 if datatype == "BF16" else sample.dtype)
    assert columns["x"].tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        ("float64", "FP64"),
        ("float32", "FP32"),
        ("int64", "INT64"),
        ("int32", "INT32"),
        ("uint8", "UINT8"),
        ("bool", "BOOL"),
        ("string", "BYTES"),
        ("category", "BYTES"),
        ("datetime", "BYTES"),
    ],
)
def test_signature_dtypes_map_to_datatypes(dtype: str, datatype: str) -> None:
    assert signature_datatype(dtype) == datatype


def test_bf16_json_numbers_decode_to_float32() -> None:
    columns = decode_request(body(tensor("x", "BF16", [2], [0.5, 2.0])), None, None).columns
    assert columns["x"].dtype == np.float32
    assert columns["x"].tolist() == [0.5, 2.0]


# -- JSON data: flat, nested, per column, one 2-D tensor -------------------------------------


def test_per_column_tensors_map_to_signature_columns() -> None:
    payload = body(
        tensor("tenure", "INT64", [2], [3, 40]),
        tensor("charges", "FP64", [2, 1], [[70.5], [None]]),
        tensor("plan", "BYTES", [2], ["basic", "pro"]),
        id="req-1",
        parameters={"content_type": "pd"},
    )

    decoded = decode_request(payload, None, MIXED)

    assert decoded.request_id == "req-1"
    assert decoded.requested_outputs is None
    assert not decoded.binary_outputs_wanted
    assert decoded.columns["tenure"].tolist() == [3, 40]
    assert decoded.columns["charges"][0] == 70.5
    assert np.isnan(decoded.columns["charges"][1])
    assert decoded.columns["plan"].tolist() == ["basic", "pro"]


@pytest.mark.parametrize(
    "data",
    [[1.0, 2.0, 3, 4.0, 5.0, 6], [[1.0, 2.0, 3], [4.0, 5.0, 6]]],
    ids=["flat", "nested"],
)
def test_single_2d_tensor_splits_into_columns_in_signature_order(data: list[Any]) -> None:
    columns = decode_request(body(tensor("input-0", "FP64", [2, 3], data)), None, NUMERIC).columns

    assert list(columns) == ["a", "b", "c"]
    assert columns["a"].tolist() == [1.0, 4.0]
    assert columns["c"].tolist() == [3.0, 6.0]


def test_single_2d_tensor_in_binary_from_tritonclient() -> None:
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    payload, json_size = triton_body({"features": matrix})

    columns = decode_request(payload, json_size, NUMERIC).columns

    assert columns["b"].tolist() == matrix[:, 1].tolist()


def test_mixed_columns_in_binary_from_tritonclient() -> None:
    arrays = {
        "plan": np.array(["basic", "plus"], dtype=object),
        "tenure": np.array([[1], [2]], dtype=np.int64),
        "charges": np.array([1.5, 2.5]),
    }
    payload, json_size = triton_body(arrays)

    columns = decode_request(payload, json_size, MIXED).columns

    assert columns["plan"].tolist() == ["basic", "plus"]
    assert columns["tenure"].tolist() == [1, 2]
    assert columns["charges"].tolist() == [1.5, 2.5]


def test_hand_built_binary_body_with_bytes_and_fp64() -> None:
    texts = serialize_byte_tensor(np.array([b"basic", "pro"], dtype=object)).item()
    assert texts == struct.pack("<I", 5) + b"basic" + struct.pack("<I", 3) + b"pro"
    numbers = struct.pack("<2d", 1.5, -2.0)
    header = body(
        {"name": "plan", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 16}},
        {
            "name": "charges",
            "datatype": "FP64",
            "shape": [2],
            "parameters": {"binary_data_size": 16},
        },
        tensor("tenure", "INT64", [2], [1, 2]),
        outputs=[{"name": "predict", "parameters": {"binary_data": True}}],
    )

    decoded = decode_request(header + texts + numbers, len(header), MIXED)

    assert decoded.columns["plan"].tolist() == ["basic", "pro"]
    assert decoded.columns["charges"].tolist() == [1.5, -2.0]
    assert decoded.requested_outputs == [RequestedOutput("predict", True)]


def test_request_level_binary_output_flag() -> None:
    payload, json_size = triton_body({"c": np.array([1, 2], dtype=np.int64)})
    decoded = decode_request(payload, json_size, None)
    assert decoded.binary_outputs_wanted  # tritonclient's default with no outputs listed
    assert decoded.requested_outputs is None


# -- errors name the tensor ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        ([tensor("tenure", "INT64", [3], [1, 2])], SchemaError, r"'tenure' has shape \[3\]"),
        ([tensor("tenure", "INT64", [2], [1, 2.5])], SchemaError, "'tenure'.*fractional"),
        (
            [tensor("tenure", "INT8", [1], [300])],
            SchemaError,
            "'tenure' is INT8 but holds values outside",
        ),
        ([tensor("tenure", "INT64", [1], ["3"])], SchemaError, "'tenure'.*holds text"),
        ([tensor("tenure", "INT64", [1], [None])], SchemaError, "'tenure'.*null"),
        ([tensor("tenure", "BOOL", [1], [1])], SchemaError, "'tenure'.*BOOL.*numbers"),
        ([tensor("plan", "BYTES", [1], [3])], SchemaError, "'plan' is BYTES but holds 3"),
        ([tensor("plan", "FP64", [1], [1.0])], SchemaError, "'plan' is FP64 but column 'plan'"),
        ([tensor("x", "FLOAT", [1], [1.0])], SchemaError, "'x' has datatype 'FLOAT'"),
        ([tensor("x", "FP64", [-1], [1.0])], SchemaError, r"'x' has shape \[-1\]"),
        ([tensor("x", "FP64", [2, 2], [[1.0, 2.0], [3.0]])], SchemaError, "'x' has ragged"),
        ([{"name": "x", "datatype": "FP64", "shape": [1]}], SchemaError, "'x' has neither"),
    ],
)
def test_malformed_tensors_are_refused_naming_them(
    inputs: list[dict[str, Any]], error: type[ShipyardError], match: str
) -> None:
    others = [
        tensor(n, d, [2], v)
        for n, d, v in [("tenure", "INT64", [1, 2]), ("charges", "FP64", [1.0, 2.0])]
        if n not in {t["name"] for t in inputs}
    ]
    with pytest.raises(error, match=match) as caught:
        decode_request(body(*inputs, *others), None, MIXED)
    assert isinstance(caught.value, SchemaError)
    assert caught.value.column == inputs[0]["name"]


def test_unknown_and_missing_tensors_name_the_column() -> None:
    with pytest.raises(SchemaError, match="'plans' is not a column") as caught:
        decode_request(
            body(tensor("tenure", "INT64", [1], [1]), tensor("plans", "BYTES", [1], ["a"])),
            None,
            MIXED,
        )
    assert caught.value.column == "plans"
    with pytest.raises(SchemaError, match=r"'plan' \(BYTES\) is missing") as caught:
        decode_request(
            body(tensor("tenure", "INT64", [1], [1]), tensor("charges", "FP64", [1], [1.0])),
            None,
            MIXED,
        )
    assert caught.value.column == "plan"


def test_single_tensor_refused_for_text_columns_or_wrong_width() -> None:
    with pytest.raises(SchemaError, match="cannot carry column 'plan'"):
        decode_request(body(tensor("input", "FP64", [1, 3], [1.0, 2.0, 3.0])), None, MIXED)
    with pytest.raises(SchemaError, match=r"\[-1, 3\].*a, b, c"):
        decode_request(body(tensor("input", "FP64", [2, 2], [1.0, 2.0, 3.0, 4.0])), None, NUMERIC)
    with pytest.raises(SchemaError, match="'input' is BYTES"):
        decode_request(body(tensor("input", "BYTES", [1, 3], ["1", "2", "3"])), None, NUMERIC)


def test_columns_of_different_lengths_are_refused() -> None:
    payload = body(
        tensor("tenure", "INT64", [2], [1, 2]),
        tensor("charges", "FP64", [1], [1.0]),
        tensor("plan", "BYTES", [2], ["basic", "pro"]),
    )
    with pytest.raises(SchemaError, match="'charges' has 1 rows but 'tenure' has 2"):
        decode_request(payload, None, MIXED)


@pytest.mark.parametrize(
    ("payload", "header_length", "match"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[]", None, "non-empty list 'inputs'"),
        (b'{"inputs": []}', None, "non-empty list 'inputs'"),
        (b'{"inputs": [3]}', None, "input #0 must be an object"),
        (b'{"inputs": [{"name": "x"}]}', 99, "Inference-Header-Content-Length is 99"),
        (body(tensor("x", "FP64", [1], [1.0]), outputs="predict"), None, "'outputs' must list"),
    ],
)
def test_malformed_bodies_are_invalid_arguments(
    payload: bytes, header_length: int | None, match: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        decode_request(payload, header_length, None)


def test_binary_sizes_must_add_up() -> None:
    array = np.array([1.0, 2.0])
    payload, json_size = triton_body({"x": array})
    assert json_size is not None
    with pytest.raises(InvalidArgumentError, match="declares 16 binary bytes but 8 follow"):
        decode_request(payload[:-8], json_size, None)
    with pytest.raises(InvalidArgumentError, match="4 bytes follow the last tensor"):
        decode_request(payload + b"\0\0\0\0", json_size, None)
    header = body(
        {"name": "x", "datatype": "FP64", "shape": [3], "parameters": {"binary_data_size": 16}}
    )
    with pytest.raises(SchemaError, match=r"'x' has shape \[3\] of FP64 \(24 bytes\) but 16"):
        decode_request(header + array.tobytes(), len(header), None)
    header = body(
        {"name": "x", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}
    )
    with pytest.raises(SchemaError, match="'x' has BYTES data that is not 4-byte lengths"):
        decode_request(header + struct.pack("<I", 9) + b"ab", len(header), None)


# -- responses -----------------------------------------------------------------------------


def prediction(labels: Any = (0, 1, 1)) -> Prediction:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    return Prediction(np.asarray(labels), probabilities, classes=[0, 1])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize(
    "labels",
    [np.array([0, 1, 1]), np.array(["no", "yes", "yes"], dtype=object), np.array([0.5, 1, 2])],
    ids=["int", "text", "float"],
)
def test_responses_read_back_with_tritonclient(binary: bool, labels: np.ndarray) -> None:
    payload, headers = encode_response("churn", 3, "r-1", prediction(labels), None, binary)

    length = headers.get(HEADER_LENGTH)
    assert (length is not None) == binary
    result = triton.InferenceServerClient.parse_response_body(
        payload, header_length=int(length) if length else None
    )
    response = result.get_response()
    assert response["model_name"] == "churn"
    assert response["model_version"] == "3"
    assert response["id"] == "r-1"
    got = result.as_numpy(PREDICT_OUTPUT)
    if labels.dtype == object:
        expected = [s.encode() for s in labels] if binary else list(labels)
        assert got.tolist() == expected
    else:
        assert got.tolist() == labels.tolist()
        assert got.dtype == labels.dtype
    assert result.as_numpy(PROBA_OUTPUT).shape == (3, 2)
    assert result.as_numpy(PROBA_OUTPUT)[1].tolist() == [0.2, 0.8]


def test_requested_outputs_pick_names_order_and_encoding() -> None:
    wanted = [RequestedOutput(PROBA_OUTPUT, True), RequestedOutput(PREDICT_OUTPUT, False)]

    payload, headers = encode_response("m", 1, None, prediction(), wanted, binary=False)

    length = int(headers[HEADER_LENGTH])
    doc = orjson.loads(payload[:length])
    assert "id" not in doc
    assert [o["name"] for o in doc["outputs"]] == [PROBA_OUTPUT, PREDICT_OUTPUT]
    proba, predict = doc["outputs"]
    assert proba == {
        "name": PROBA_OUTPUT,
        "datatype": "FP64",
        "shape": [3, 2],
        "parameters": {"binary_data_size": 48},
    }
    assert predict == {"name": "predict", "datatype": "INT64", "shape": [3], "data": [0, 1, 1]}
    assert np.frombuffer(payload[length:], "<f8").tolist() == [0.9, 0.1, 0.2, 0.8, 0.4, 0.6]


def test_binary_bytes_output_layout_by_hand() -> None:
    labels = Prediction(np.array(["no", "yés"], dtype=object))
    payload, headers = encode_response("m", 1, None, labels, None, binary=True)

    length = int(headers[HEADER_LENGTH])
    raw = payload[length:]
    assert raw == struct.pack("<I", 2) + b"no" + struct.pack("<I", 4) + "yés".encode()
    assert orjson.loads(payload[:length])["outputs"][0]["datatype"] == "BYTES"


def test_json_response_for_fp16_and_nan() -> None:
    values = Prediction(np.array([0.5, np.nan], dtype=np.float16))
    payload, headers = encode_response("m", 1, None, values, None, binary=False)
    assert headers == {"content-type": "application/json"}
    (output,) = orjson.loads(payload)["outputs"]
    assert output == {"name": "predict", "datatype": "FP16", "shape": [2], "data": [0.5, None]}
    assert triton_to_np_dtype(output["datatype"]) == np.float16


def test_unknown_or_unavailable_output_is_refused() -> None:
    regression = Prediction(np.array([1.5]))
    with pytest.raises(InvalidArgumentError, match="'predict_proba': the model gives predict"):
        encode_response("m", 1, None, regression, [RequestedOutput(PROBA_OUTPUT)], False)
    with pytest.raises(InvalidArgumentError, match="classification extension"):
        decode_request(
            body(
                tensor("x", "FP64", [1], [1.0]),
                outputs=[{"name": "predict", "parameters": {"classification": 2}}],
            ),
            None,
            None,
        )


def test_json_integers_stay_exact_and_floats_in_range() -> None:
    big = [0, 2**64 - 1]
    columns = decode_request(body(tensor("x", "UINT64", [2], big)), None, None).columns
    assert columns["x"].tolist() == big
    with pytest.raises(SchemaError, match="'x' is FP16 but holds values outside its range"):
        decode_request(body(tensor("x", "FP16", [1], [1e10])), None, None)
    with pytest.raises(SchemaError, match="'x' is declared FP64 but holds true/false"):
        decode_request(body(tensor("x", "FP64", [1], [True])), None, None)
