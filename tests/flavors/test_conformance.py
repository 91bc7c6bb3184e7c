"""Every flavor passes the same checks, in the spirit of scikit-learn's parametrize_with_checks.

Each case builds a fitted model (or a model file / MLflow folder) on generated tabular
data, stores it through shipyard's dispatch (``save_model`` / ``import_model``) and loads
it back trusting what it reported. The checks: identical predictions and probabilities,
a signature that validates 1 row and 100,000 rows, and :class:`SchemaError` naming the
column for a missing column, an unknown column and a string in a numeric column. MLflow
folders must also agree with ``mlflow.pyfunc.load_model``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.flavors.cases import CASES, Built

from shipyard.core.exceptions import SchemaError
from shipyard.flavors import load_model

pytestmark = pytest.mark.filterwarnings(
    # skl2onnx / onnx converters and mlflow's pyfunc wrapper emit these on valid input.
    "ignore::UserWarning:skl2onnx.*",
    "ignore::UserWarning:sklearn.*",
)


# -------------------------------------------------------------------------------- checks


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp(request.param)
    return CASES[request.param](root)


def test_roundtrip_gives_identical_predictions(built: Built) -> None:
    rows = built.rows(300, 100)
    native = built.loaded.predictor
    assert np.array_equal(np.asarray(native.predict(rows)), np.asarray(built.predict(rows)))
    if built.predict_proba is None:
        assert not built.loaded.has_proba or built.flavor == "mlflow"
        return
    assert built.loaded.has_proba
    expected = np.asarray(built.predict_proba(rows))
    assert np.array_equal(np.asarray(native.predict_proba(rows)), expected)


@pytest.mark.parametrize("n_rows", [1, 100_000])
def test_signature_validates_and_predicts(built: Built, n_rows: int) -> None:
    rows = built.rows(n_rows, 200 + n_rows)
    got = built.loaded.predict(rows)
    assert got.shape[0] == n_rows
    assert np.array_equal(got, np.asarray(built.predict(rows)))
    if built.predict_proba is not None:
        assert np.array_equal(built.loaded.predict_proba(rows), built.predict_proba(rows))


def _missing(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    return rows.drop(columns="num_b"), "num_b"


def _extra(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    return rows.assign(surprise=1.0), "surprise"


def _wrong_type(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    bad = rows.astype({"num_b": object})
    bad.loc[bad.index[0], "num_b"] = "oops"
    return bad, "num_b"


@pytest.mark.parametrize(
    "spoil", [_missing, _extra, _wrong_type], ids=["missing", "extra", "dtype"]
)
def test_schema_errors_name_the_column(
    built: Built, spoil: Callable[[pd.DataFrame], tuple[pd.DataFrame, str]]
) -> None:
    rows, column = spoil(built.rows(5, 300))
    with pytest.raises(SchemaError, match=f"'{column}'") as info:
        built.loaded.predict(rows)
    assert info.value.column == column


@pytest.mark.parametrize("built", [c for c in CASES if c.startswith("mlflow")], indirect=True)
def test_mlflow_agrees_with_mlflow_pyfunc(built: Built) -> None:
    import mlflow.pyfunc

    assert built.mlflow_dir is not None

    rows = built.rows(300, 400)
    reference = mlflow.pyfunc.load_model(str(built.mlflow_dir)).predict(rows)
    if isinstance(reference, pd.DataFrame):  # the onnx wrapper: one column per output
        reference = reference.iloc[:, 0]
    ours = built.loaded.predict(rows)
    assert np.array_equal(ours, np.asarray(reference))


def test_stored_folder_is_self_contained(built: Built, tmp_path: Path) -> None:
    """The stored folder loads from anywhere (the registry moves it into its store)."""
    moved = tmp_path / "moved"
    shutil.copytree(built.directory, moved)
    config = {**built.saved.config, "trusted_types": built.saved.untrusted_types}
    loaded = load_model(moved, built.flavor, config, built.signature)
    rows = built.rows(20, 500)
    assert np.array_equal(loaded.predict(rows), built.loaded.predict(rows))
