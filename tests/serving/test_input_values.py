"""Values a model never sees: integers outside the column's dtype, booleans in numeric columns,
non-finite floats where the signature takes no missing values, and bodies that would crash the
parser. Each is refused naming the column, on every protocol (native, MLflow JSON and CSV, Open
Inference v2 JSON and binary) and every input mode (``encoded``, ``array``, ``kernel``), while
``±inf`` in a column that takes missing values is scored as a missing value.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from tests.helpers import make_frame, make_settings
from tests.serving.conftest import serving

from shipyard import Project
from shipyard.core.exceptions import SchemaError
from shipyard.core.schema import ColumnSpec, Signature
from shipyard.serving import create_app

pytestmark = pytest.mark.anyio

#: Integers a JSON client may send that no int64 column holds (orjson reads the first and the
#: last as floats, the second as an unsigned 64-bit integer).
TOO_BIG = (10**30, 2**64 - 1, -(2**63) - 1)
#: A number literal that no float64 holds (orjson refuses it; Python's json reads an int).
HUGE = "1" + "0" * 400


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """Four models, one per input mode and kind of column.

    - ``churn`` (encoded): tenure int64, charges float64, plan string, all nullable;
    - ``lin`` (array, all-float fast path): x1, x2 float64, not nullable;
    - ``linint`` (array): tenure int64, x float64, not nullable;
    - ``hgb`` (kernel): tenure int64, x float64, both nullable (the trees take NaN).
    """
    frame, target = make_frame(200)
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        (SimpleImputer(), ["charges"]),
        remainder="passthrough",
    )
    churn = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=5)).fit(frame, target)
    rng = np.random.default_rng(0)
    floats = pd.DataFrame({"x1": rng.normal(size=200), "x2": rng.normal(size=200)})
    mixed = pd.DataFrame({"tenure": frame["tenure"], "x": rng.normal(size=200)})
    root = tmp_path_factory.mktemp("values")
    settings = make_settings(root / "proj", f"sqlite:///{root / 'shipyard.db'}")
    with Project(settings=settings) as opened:
        registry = opened.registry
        registry.register("churn", churn, input_example=frame.head(20), trust=True)
        registry.register("lin", LogisticRegression().fit(floats, target), trust=True,
                          input_example=floats.head(20))  # fmt: skip
        registry.register("linint", LogisticRegression().fit(mixed, target), trust=True,
                          input_example=mixed.head(20))  # fmt: skip
        registry.register("hgb", HistGradientBoostingClassifier(max_iter=5).fit(mixed, target),
                          input_example=mixed.head(20), trust=True)  # fmt: skip
        yield opened


@pytest.fixture(scope="module")
async def client(project: Project) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the server of the four models."""
    async with serving(create_app(project.registry, ["churn", "lin", "linint", "hgb"])) as c:
        yield c


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-scoped async fixtures run on asyncio."""
    return "asyncio"


def dumps(value: Any) -> bytes:
    """JSON bytes; Python's json writes integers of any size (orjson stops at 64 bits)."""
    return json.dumps(value).encode()


def row(model: str, **values: Any) -> dict[str, Any]:
    """A valid row of ``model`` with ``values`` replaced."""
    base = {
        "churn": {"tenure": 12, "charges": 70.5, "plan": "basic"},
        "lin": {"x1": 0.5, "x2": -0.25},
        "linint": {"tenure": 12, "x": 0.5},
        "hgb": {"tenure": 12, "x": 0.5},
    }[model]
    return {**base, **values}


def raw_records(model: str, column: str, literal: str) -> bytes:
    """A one-row records body whose ``column`` is the JSON text ``literal`` (e.g. Infinity)."""
    marker = -123456.25
    body = dumps([row(model, **{column: marker})]).decode()
    return body.replace(str(marker), literal).encode()


async def native(client: httpx.AsyncClient, model: str, body: bytes) -> httpx.Response:
    return await client.post(f"/v1/models/{model}/predict", content=body)


def assert_refused(response: httpx.Response, column: str, *words: str) -> None:
    """A 422 in shipyard's error body naming ``column`` (and saying ``words``)."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"] == "SchemaError"
    assert body["column"] == column
    for word in words:
        assert word in body["error"]


# -- integers outside the column's dtype -------------------------------------------------------


@pytest.mark.parametrize("model", ["churn", "linint", "hgb"])
@pytest.mark.parametrize("value", TOO_BIG, ids=["1e30", "2**64-1", "-2**63-1"])
async def test_integers_beyond_int64_are_refused_in_records(
    client: httpx.AsyncClient, model: str, value: int
) -> None:
    # before: 1e30 wrapped to -9223372036854775808 and was scored with 200
    response = await native(client, model, dumps([row(model, tenure=value)]))
    assert_refused(response, "tenure", "int64", "range")


async def test_integers_beyond_int64_are_refused_in_split_and_batches(
    client: httpx.AsyncClient,
) -> None:
    split = {"columns": ["tenure", "x"], "data": [[3, 0.1], [10**30, 0.2]]}
    assert_refused(await native(client, "linint", dumps(split)), "tenure", "int64")
    many = [row("linint", tenure=t) for t in (1, 2, 2**64 - 1, 4)]
    assert_refused(await native(client, "linint", dumps(many)), "tenure", "int64")


async def test_the_largest_int64_still_passes(client: httpx.AsyncClient) -> None:
    for value in (2**63 - 1, -(2**63)):
        response = await native(client, "linint", dumps([row("linint", tenure=value)]))
        assert response.status_code == 200, response.text


async def test_a_huge_integer_literal_is_refused_not_a_crash(client: httpx.AsyncClient) -> None:
    # orjson refuses it, Python's json reads an int: before, the float conversion raised
    # OverflowError, a 500
    assert_refused(await native(client, "linint", raw_records("linint", "tenure", HUGE)), "tenure")
    assert_refused(await native(client, "lin", raw_records("lin", "x1", HUGE)), "x1", "float64")
    assert_refused(await native(client, "churn", raw_records("churn", "charges", HUGE)), "charges")


# -- booleans in numeric columns ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "column"),
    [("churn", "tenure"), ("linint", "tenure"), ("linint", "x"), ("lin", "x1"), ("hgb", "x")],
)
async def test_booleans_in_numeric_columns_are_refused(
    client: httpx.AsyncClient, model: str, column: str
) -> None:
    # before: true was scored as 1
    one = await native(client, model, dumps([row(model, **{column: True})]))
    assert_refused(one, column, "bool")
    mixed = [row(model), row(model, **{column: False}), row(model)]
    assert_refused(await native(client, model, dumps(mixed)), column, "bool")


# -- non-finite floats -------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize(("model", "column"), [("lin", "x1"), ("linint", "x")])
async def test_non_finite_floats_are_refused_where_missing_values_are(
    client: httpx.AsyncClient, model: str, column: str, literal: str
) -> None:
    # before: inf was scored with 200
    response = await native(client, model, raw_records(model, column, literal))
    assert_refused(response, column, "non-finite")


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize(("model", "column"), [("churn", "charges"), ("hgb", "x")])
async def test_non_finite_floats_count_as_missing_where_the_model_takes_them(
    client: httpx.AsyncClient, model: str, column: str, literal: str
) -> None:
    # before: churn's imputer failed on inf (a 500), hgb scored inf as a huge number
    response = await native(client, model, raw_records(model, column, literal))
    missing = await native(client, model, dumps([row(model, **{column: None})]))
    assert response.status_code == missing.status_code == 200, response.text
    assert response.json()["probabilities"] == missing.json()["probabilities"]


# -- the MLflow protocol: JSON and CSV ---------------------------------------------------------


async def mlflow(client: httpx.AsyncClient, model: str, body: bytes, csv: bool = False) -> Any:
    content_type = "text/csv" if csv else "application/json"
    response = await client.post(
        f"/invocations?model={model}", content=body, headers={"content-type": content_type}
    )
    return response


def assert_mlflow_refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_code"] == "BAD_REQUEST"
    for word in words:
        assert word in body["message"]


async def test_mlflow_json_refuses_the_same_values(client: httpx.AsyncClient) -> None:
    split = {"dataframe_split": {"columns": ["tenure", "x"], "data": [[10**30, 0.5]]}}
    assert_mlflow_refused(await mlflow(client, "linint", dumps(split)), "tenure", "range")
    records = {"dataframe_records": [row("lin", x1=True)]}
    assert_mlflow_refused(await mlflow(client, "lin", dumps(records)), "x1", "bool")
    instances = {"instances": [[1.0, 2.0], [-123456.25, 1.0]]}
    body = dumps(instances).replace(b"-123456.25", b"Infinity")
    assert_mlflow_refused(await mlflow(client, "lin", body), "x1", "non-finite")
    inputs = {"inputs": {"tenure": [2**64 - 1], "x": [0.5]}}
    assert_mlflow_refused(await mlflow(client, "hgb", dumps(inputs)), "tenure", "int64")


@pytest.mark.parametrize(
    ("model", "csv", "column", "word"),
    [
        ("linint", "tenure,x\n100000000000000000000000000000,0.5\n", "tenure", "range"),
        ("linint", "tenure,x\n18446744073709551615,0.5\n", "tenure", "range"),
        ("churn", "tenure,charges,plan\n-9223372036854775809,1.0,basic\n", "tenure", "range"),
        ("linint", "tenure,x\ntrue,0.5\nfalse,0.25\n", "tenure", "bool"),
        ("lin", "x1,x2\ninf,0.5\n", "x1", "non-finite"),
        ("lin", "x1,x2\n0.5,1e400\n", "x2", "non-finite"),
        ("lin", f"x1,x2\n0.5,{HUGE}\n", "x2", "float64"),
    ],
)
async def test_mlflow_csv_refuses_the_same_values(
    client: httpx.AsyncClient, model: str, csv: str, column: str, word: str
) -> None:
    response = await mlflow(client, model, csv.encode(), csv=True)
    assert_mlflow_refused(response, column, word)


async def test_mlflow_csv_infinity_is_missing_where_the_model_takes_it(
    client: httpx.AsyncClient,
) -> None:
    infinite = await mlflow(client, "churn", b"tenure,charges,plan\n3,inf,basic\n", csv=True)
    missing = await mlflow(client, "churn", b"tenure,charges,plan\n3,,basic\n", csv=True)
    assert infinite.status_code == missing.status_code == 200, infinite.text
    assert infinite.json() == missing.json()


async def test_a_csv_row_with_an_extra_field_is_named(client: httpx.AsyncClient) -> None:
    # before: pandas took the first column as the index and the error blamed "tenure"
    response = await mlflow(client, "linint", b"tenure,x\n1,0.5,7\n2,0.25\n", csv=True)
    assert_mlflow_refused(response, "row 1", "3 fields", "header names 2")
    assert "tenure expects" not in response.json()["message"]
    later = await mlflow(client, "linint", b"tenure,x\n1,0.5\n2,0.25,7\n", csv=True)
    assert_mlflow_refused(later, "line 3", "saw 3")


# -- Open Inference Protocol v2: JSON and binary tensors ----------------------------------------


def tensor(name: str, datatype: str, data: list[Any], shape: list[int] | None = None) -> Any:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


async def infer(client: httpx.AsyncClient, model: str, doc: Any, binary: bytes = b"") -> Any:
    header = dumps(doc)
    headers = {"inference-header-content-length": str(len(header))} if binary else {}
    response = await client.post(
        f"/v2/models/{model}/infer", content=header + binary, headers=headers
    )
    return response


def assert_v2_refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 422, response.text
    for word in words:
        assert word in response.json()["error"]


@pytest.mark.parametrize(
    ("tenure", "word"),
    [
        (tensor("tenure", "FP64", [10**30]), "range"),
        (tensor("tenure", "UINT64", [2**64 - 1]), "range"),
        (tensor("tenure", "INT64", [1, True]), "true/false"),
        (tensor("tenure", "FP64", [1.5, True]), "true/false"),
    ],
    ids=["fp64-1e30", "uint64-max", "int64-true", "fp64-true"],
)
async def test_v2_json_tensors_refuse_the_same_values(
    client: httpx.AsyncClient, tenure: Any, word: str
) -> None:
    count = len(tenure["data"])
    doc = {"inputs": [tenure, tensor("x", "FP64", [0.5] * count)]}
    assert_v2_refused(await infer(client, "linint", doc), "tenure", word)


async def test_v2_binary_tensors_refuse_the_same_values(client: httpx.AsyncClient) -> None:
    matrix = np.array([[0.5, 1.0], [np.inf, 2.0]])
    raw = matrix.astype("<f8").tobytes()
    doc = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 2],
                       "parameters": {"binary_data_size": len(raw)}}]}  # fmt: skip
    assert_v2_refused(await infer(client, "lin", doc, raw), "x1", "non-finite")
    big = struct.pack("<Q", 2**64 - 1)
    half = np.array([0.5]).astype("<f8").tobytes()
    doc = {"inputs": [{"name": "tenure", "datatype": "UINT64", "shape": [1],
                       "parameters": {"binary_data_size": 8}},
                      {"name": "x", "datatype": "FP64", "shape": [1],
                       "parameters": {"binary_data_size": 8}}]}  # fmt: skip
    assert_v2_refused(await infer(client, "linint", doc, big + half), "tenure", "range")
    # into an int32 column, an INT64 tensor is range-checked too
    sig = Signature((ColumnSpec("n", "int32"),))
    from shipyard.serving.columns import ColumnCaster

    with pytest.raises(SchemaError, match="int32"):
        ColumnCaster(sig).cast({"n": np.array([2**40], dtype=np.int64)})


async def test_v2_binary_infinity_is_missing_where_the_model_takes_it(
    client: httpx.AsyncClient,
) -> None:
    def doc(x: float) -> tuple[Any, bytes]:
        raw = np.array([12], "<i8").tobytes() + np.array([x], "<f8").tobytes()
        inputs = [{"name": "tenure", "datatype": "INT64", "shape": [1],
                   "parameters": {"binary_data_size": 8}},
                  {"name": "x", "datatype": "FP64", "shape": [1],
                   "parameters": {"binary_data_size": 8}}]  # fmt: skip
        return {"inputs": inputs}, raw

    infinite = await infer(client, "hgb", *doc(np.inf))
    missing = await infer(client, "hgb", *doc(np.nan))
    assert infinite.status_code == missing.status_code == 200, infinite.text
    assert infinite.json()["outputs"] == missing.json()["outputs"]


# -- bodies that broke the parser --------------------------------------------------------------


@pytest.mark.parametrize("depth", [2_000, 100_000])
async def test_deeply_nested_json_is_400(client: httpx.AsyncClient, depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    # with NaN first, orjson gives up at once and Python's json recursed until RecursionError
    with_nan = b"[NaN," + nested + b"]"
    for body in (nested, with_nan):
        response = await native(client, "lin", body)
        assert response.status_code == 400, response.text
        assert "nested" in response.json()["error"]
        answer = await mlflow(client, "lin", body)
        assert_mlflow_refused(answer, "nested")


DEEP_VALUE = "[" * 900 + "1" + "]" * 900  # under orjson's 1,024 levels, over numpy's 64
NESTED_VALUES = {
    "records": ("/v1/models/lin/predict", f'[{{"x1": {DEEP_VALUE}, "x2": 1}}]'),
    "split": ("/v1/models/lin/predict",
              f'{{"columns": ["x1", "x2"], "data": [[{DEEP_VALUE}, 1]]}}'),
    "text column": ("/v1/models/churn/predict",
                    f'[{{"tenure": 1, "charges": 1.0, "plan": {DEEP_VALUE}}}]'),
    "ragged": ("/v1/models/lin/predict", '[{"x1": [1, [2, 3]], "x2": 1}]'),
    "mlflow instances": ("/invocations?model=lin", f'{{"instances": [[{DEEP_VALUE}, 1]]}}'),
    "mlflow inputs": ("/invocations?model=lin", f'{{"inputs": {{"x1": {DEEP_VALUE}, "x2": [1]}}}}'),
}  # fmt: skip


@pytest.mark.parametrize("case", NESTED_VALUES.values(), ids=NESTED_VALUES.keys())
async def test_nested_values_are_refused_naming_the_column(
    client: httpx.AsyncClient, case: tuple[str, str]
) -> None:
    # before: numpy's ValueError (ragged, or more than 64 dimensions), a 500
    path, body = case
    answer = await client.post(
        path, content=body.encode(), headers={"content-type": "application/json"}
    )
    assert answer.status_code in (400, 422), answer.text
    assert "one value per row" in answer.text


# -- the checked path (batch scoring) shares the rules ----------------------------------------


def test_signature_validate_refuses_the_same_values() -> None:
    signature = Signature(
        (ColumnSpec("n", "int64"), ColumnSpec("x", "float64"), ColumnSpec("m", "float64", True))
    )
    good = pd.DataFrame({"n": [1, 2], "x": [0.5, 1.5], "m": [np.inf, 1.0]})
    out = signature.validate(good)
    assert np.isnan(out["m"].iloc[0])
    cases = {
        "n": [pd.Series([1e30, 1.0]), pd.Series([2**64 - 1, 1], dtype="uint64"),
              pd.Series([10**30, 1], dtype=object), pd.Series([True, False])],
        "x": [pd.Series([np.inf, 1.0]), pd.Series([True, False])],
    }  # fmt: skip
    for column, values in cases.items():
        for series in values:
            frame = good.assign(**{column: series})
            with pytest.raises(SchemaError) as caught:
                signature.validate(frame)
            assert caught.value.column == column
