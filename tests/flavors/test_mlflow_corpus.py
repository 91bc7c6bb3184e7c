"""MLflow models score as MLflow scores them: imported through the CLI, then asked through the
registry, the server and a batch job, on rows with missing values in different places.

For every model of the corpus and every variant of rows, ``mlflow.pyfunc.load_model(...)
.predict`` is the reference: where it answers, shipyard's answers are equal (exactly for
classes, within 1e-9 for numbers); where it refuses (a missing value in an integer column,
a NaN the model cannot take), shipyard refuses too, with a SchemaError naming the column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from tests.flavors.mlflow_corpus import HGB_TREES, MlflowModel, customers
from tests.serving.conftest import serving
from typer.testing import CliRunner

from shipyard import Project, SchemaError
from shipyard.cli.app import app
from shipyard.serving import create_app

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:sklearn.*")

runner = CliRunner()
#: (model, variant) for every variant of rows of every model of the corpus.
CASES = [
    ("logreg-skops", "optional"),
    ("logreg-skops", "anywhere"),
    ("logreg-skops", "integer"),
    ("hgb-cloudpickle", "optional"),
    ("hgb-cloudpickle", "anywhere"),
    ("hgb-cloudpickle", "integer"),
    ("lgb-booster", "optional"),
    ("lgb-booster", "anywhere"),
    ("lgb-booster", "integer"),
    ("xgb-classifier", "optional"),
    ("xgb-classifier", "anywhere"),
    ("xgb-classifier", "integer"),
    ("pyfunc-custom", "optional"),
    ("pyfunc-custom", "anywhere"),
    ("pyfunc-custom", "integer"),
    ("tensor-hgb", "optional"),
    ("tensor-hgb", "anywhere"),
]
Reference = Callable[[str, pd.DataFrame], "np.ndarray | Exception"]


@dataclass
class Imported:
    """The project every corpus model was imported into, and what each import printed."""

    project: Project
    root: Path
    printed: dict[str, str]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the server's loop)."""
    return "asyncio"


@pytest.fixture(scope="module")
def imported(
    tmp_path_factory: pytest.TempPathFactory, mlflow_corpus: dict[str, MlflowModel]
) -> Iterator[Imported]:
    """A project made by ``shipyard init`` with each folder imported by ``import-mlflow``."""
    root = tmp_path_factory.mktemp("corpus-project") / "proj"
    made = runner.invoke(app, ["init", str(root), "--name", "corpus", "--bare"])
    assert made.exit_code == 0, made.output
    printed: dict[str, str] = {}
    for model in mlflow_corpus.values():
        args = ["--project", str(root), "models", "import-mlflow", str(model.folder)]
        result = runner.invoke(app, [*args, "-n", model.name, "--trust"])
        assert result.exit_code == 0, result.output
        printed[model.name] = " ".join(result.stdout.split())  # the console wraps lines
    with Project(root) as project:
        yield Imported(project, root, printed)


@pytest.fixture(scope="module")
def reference(mlflow_corpus: dict[str, MlflowModel]) -> Reference:
    """``predict(name, rows)``: what MLflow's pyfunc answers, or the exception it raises."""
    import mlflow.pyfunc

    loaded: dict[str, Any] = {}

    def predict(name: str, rows: pd.DataFrame) -> np.ndarray | Exception:
        model = mlflow_corpus[name]
        if name not in loaded:
            loaded[name] = mlflow.pyfunc.load_model(str(model.folder))
        try:
            answer = loaded[name].predict(model.mlflow_input(rows))
        except Exception as exc:  # MLflow's schema enforcement or the model refused
            return exc
        if isinstance(answer, pd.DataFrame | pd.Series):
            answer = answer.to_numpy()
        return np.asarray(answer)

    return predict


def assert_same(ours: Any, theirs: np.ndarray) -> None:
    """Classes exactly, numbers within 1e-9."""
    got = np.asarray(ours)
    assert got.shape == theirs.shape
    if theirs.dtype.kind == "f":
        np.testing.assert_allclose(got.astype("float64"), theirs, rtol=0, atol=1e-9)
    else:
        assert got.tolist() == theirs.tolist()


def refused_column(variant: str, model: MlflowModel) -> str:
    """The column a refusal of ``variant`` names."""
    if variant == "integer":
        return "tenure"
    return "2" if model.tensor else "score"


def json_rows(rows: pd.DataFrame) -> list[list[Any]]:
    """Rows as JSON values (NaN and None as null, floats exact).

    The reference for answers to such a body is MLflow on ``pd.DataFrame(rows, columns=...)``,
    the frame MLflow's scoring server builds from it (with pandas 3 a text column holding
    nulls becomes a ``str`` column of NaN, not an object column of None).
    """
    plain = rows.astype(object).where(rows.notna(), None)
    return [[v.item() if isinstance(v, np.generic) else v for v in row] for row in plain.values]


# -------------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_mlflow_refuses_exactly_what_the_corpus_expects(
    mlflow_corpus: dict[str, MlflowModel], reference: Reference, name: str, variant: str
) -> None:
    """Guards the corpus: MLflow itself decides which variants it scores."""
    model = mlflow_corpus[name]
    answer = reference(name, model.rows[variant])
    assert isinstance(answer, Exception) == (variant in model.refused), answer


# ---------------------------------------------------------------------------- import output


def test_import_prints_what_the_signature_and_the_mlmodel_say(imported: Imported) -> None:
    logreg = imported.printed["logreg-skops"]
    assert "missing values accepted in amount (optional in the MLmodel signature)" in logreg
    assert "plan (optional in the MLmodel signature)" in logreg
    assert "score" not in logreg  # LogisticRegression takes no NaN there
    hgb = imported.printed["hgb-cloudpickle"]
    assert "score (HistGradientBoostingRegressor handles them)" in hgb
    assert "tenure" not in hgb  # MLflow never takes a missing value in a long column
    assert "LightGBM handles them" in imported.printed["lgb-booster"]
    assert "XGBoost handles them" in imported.printed["xgb-classifier"]
    tensor = imported.printed["tensor-hgb"]
    assert "one float64 tensor of 3 columns" in tensor
    assert f"skops_trusted_types declares {HGB_TREES}" in tensor


def test_import_without_trust_names_the_declared_types(
    imported: Imported, mlflow_corpus: dict[str, MlflowModel]
) -> None:
    model = mlflow_corpus["tensor-hgb"]
    args = ["--project", str(imported.root), "models", "import-mlflow", str(model.folder)]
    result = runner.invoke(app, [*args, "-n", "untrusted"])
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert f"needs these types trusted before it can be loaded: {HGB_TREES}" in message
    assert f"The MLmodel's skops_trusted_types declares {HGB_TREES};" in message
    assert "not a decision shipyard takes" in message


def test_signatures_follow_mlflow_and_the_model(imported: Imported) -> None:
    def nullable(name: str) -> dict[str, bool]:
        signature = imported.project.registry.get(name).signature
        assert signature is not None
        return {c.name: c.nullable for c in signature.inputs}

    declared = {"amount": True, "tenure": False, "plan": True}
    assert nullable("logreg-skops") == {**declared, "score": False}
    assert nullable("hgb-cloudpickle") == {**declared, "score": True}
    assert nullable("pyfunc-custom") == {**declared, "score": True}
    assert nullable("lgb-booster") == {"amount": True, "tenure": False, "score": True}
    assert nullable("xgb-classifier") == {"amount": True, "tenure": False, "score": True}
    assert nullable("tensor-hgb") == {"0": True, "1": True, "2": True}
    hgb = imported.project.registry.get("hgb-cloudpickle").signature
    assert hgb is not None
    assert hgb.column("tenure").dtype == "int64"


# ---------------------------------------------------------------------------- three paths


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_registry_answers_as_mlflow(
    imported: Imported,
    mlflow_corpus: dict[str, MlflowModel],
    reference: Reference,
    name: str,
    variant: str,
) -> None:
    model = mlflow_corpus[name]
    rows = model.rows[variant]
    theirs = reference(name, rows)
    loaded = imported.project.registry.load(name)
    if isinstance(theirs, Exception):
        with pytest.raises(SchemaError) as refused:
            loaded.predict(rows)
        assert refused.value.column == refused_column(variant, model)
        return
    assert_same(loaded.predict(rows), theirs)


@pytest.mark.anyio
async def test_served_answers_are_mlflow_answers(
    imported: Imported, mlflow_corpus: dict[str, MlflowModel], reference: Reference
) -> None:
    """Both the MLflow protocol (dataframe_split) and the native one (records); the
    reference is MLflow on the frame its scoring server decodes from the same JSON."""
    names = sorted(mlflow_corpus)
    async with serving(create_app(imported.project.registry, names)) as client:
        for name, variant in CASES:
            model = mlflow_corpus[name]
            rows = model.rows[variant]
            columns = [str(c) for c in rows.columns]
            data = json_rows(rows)
            split = {"dataframe_split": {"columns": columns, "data": data}}
            invocations = await client.post(
                f"/invocations?model={name}",
                content=orjson.dumps(split),
                headers={"content-type": "application/json"},
            )
            records = [dict(zip(columns, row, strict=True)) for row in data]
            native = await client.post(f"/v1/models/{name}/predict", content=orjson.dumps(records))
            theirs = reference(name, pd.DataFrame(data, columns=columns))
            if isinstance(theirs, Exception):
                assert invocations.status_code == 400, (name, variant)
                assert native.status_code == 422, (name, variant)
                assert native.json()["column"] == refused_column(variant, model)
                continue
            assert invocations.status_code == 200, (name, variant, invocations.text)
            assert native.status_code == 200, (name, variant, native.text)
            assert_same(invocations.json()["predictions"], theirs)
            assert_same(native.json()["predictions"], theirs)


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["logreg-skops", "hgb-cloudpickle", "tensor-hgb"])
async def test_positional_rows_follow_the_signature_order(
    imported: Imported,
    mlflow_corpus: dict[str, MlflowModel],
    reference: Reference,
    name: str,
) -> None:
    """``{"inputs": [[...]]}`` (MLflow's body for a tensor) scores rows in signature order."""
    model = mlflow_corpus[name]
    rows = model.rows["optional"]
    body = orjson.dumps({"inputs": json_rows(rows)})
    async with serving(create_app(imported.project.registry, [name])) as client:
        answer = await client.post(
            "/invocations", content=body, headers={"content-type": "application/json"}
        )
    theirs = reference(name, pd.DataFrame(json_rows(rows), columns=rows.columns))
    assert isinstance(theirs, np.ndarray)
    assert answer.status_code == 200, answer.text
    assert_same(answer.json()["predictions"], theirs)


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_batch_answers_are_mlflow_answers(
    imported: Imported,
    mlflow_corpus: dict[str, MlflowModel],
    reference: Reference,
    tmp_path: Path,
    name: str,
    variant: str,
) -> None:
    model = mlflow_corpus[name]
    path = tmp_path / "rows.parquet"
    model.rows[variant].to_parquet(path, index=False)
    rows = pd.read_parquet(path)  # what the batch engine reads (text nulls become NaN)
    theirs = reference(name, rows)
    if isinstance(theirs, Exception):
        with pytest.raises(SchemaError):
            imported.project.predict(name, str(path))
        return
    result = imported.project.predict(name, str(path))
    scored = imported.project.datasets.read(result.job.dataset).sort_values("row_id")
    assert_same(scored["prediction"].to_numpy(), theirs)


# ------------------------------------------------------------------------- MLflow's integers


def test_integer_and_float_columns_follow_mlflow(
    imported: Imported, mlflow_corpus: dict[str, MlflowModel], reference: Reference
) -> None:
    """Integral floats fit a long column, ints fit a double column; fractions and missing
    values in a long column are refused, by MLflow and by shipyard."""
    rows = mlflow_corpus["hgb-cloudpickle"].rows["optional"]
    loaded = imported.project.registry.load("hgb-cloudpickle")
    theirs = reference("hgb-cloudpickle", rows)
    assert isinstance(theirs, np.ndarray)
    assert_same(loaded.predict(rows.astype({"tenure": "float64"})), theirs)
    whole = rows.assign(amount=rows["amount"].fillna(0).round().astype("int64"))
    assert_same(
        loaded.predict(whole), reference("hgb-cloudpickle", whole.astype({"amount": float}))
    )
    fraction = rows.astype({"tenure": "float64"})
    fraction.loc[fraction.index[0], "tenure"] = 3.5
    assert isinstance(reference("hgb-cloudpickle", fraction), Exception)
    with pytest.raises(SchemaError, match="'tenure' expects int64 but got fractional"):
        loaded.predict(fraction)
    missing = mlflow_corpus["hgb-cloudpickle"].rows["integer"]
    with pytest.raises(SchemaError, match="integer \\(int64\\) column") as refused:
        loaded.predict(missing)
    assert "log the column as double" in str(refused.value)


def test_an_example_row_missing_a_required_integer_is_refused_at_import(
    imported: Imported, mlflow_corpus: dict[str, MlflowModel], tmp_path: Path
) -> None:
    """A user's --input-example must fit the MLmodel signature (types and nulls)."""
    example = customers(20, 7).astype({"tenure": "float64"})
    example.loc[0, "tenure"] = np.nan
    example.to_csv(tmp_path / "example.csv", index=False)
    model = mlflow_corpus["hgb-cloudpickle"]
    args = ["--project", str(imported.root), "models", "import-mlflow", str(model.folder)]
    args += ["-n", "bad-example", "--trust", "--input-example", str(tmp_path / "example.csv")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "the input example does not fit the signature mlflow declares" in message
    assert "'tenure'" in message
