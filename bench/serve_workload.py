"""The serving benchmark's workload: its models, their registration, the request bodies.

``bench/serve_bench.py`` drives servers with these; ``bench/batch_contenders.py`` scores the
same ``hgb`` model (:func:`train`) in batch.
"""

from __future__ import annotations

import json
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = 20
ROWS = 5_000
SEED = 0
CHURN_TEXT = {
    "contract": ["month-to-month", "one-year", "two-year"],
    "internet_service": ["DSL", "fiber optic", "none"],
    "payment_method": ["bank transfer", "credit card", "electronic check", "mailed check"],
    "region": ["east", "north", "south", "west"],
}


def train() -> tuple[Any, pd.DataFrame]:
    """The HGB model, fitted on a seeded DataFrame of 20 float features."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame(
        rng.normal(size=(ROWS, FEATURES)), columns=[f"f{i}" for i in range(FEATURES)]
    )
    target = (frame["f0"] + frame["f1"] * frame["f2"] + rng.normal(size=ROWS) > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=SEED)
    return model.fit(frame, target), frame


def train_churn() -> tuple[Any, pd.DataFrame]:
    """The template's pipeline fitted on a seeded churn-like frame (7 numeric, 4 text)."""
    from shipyard.pipelines.standard_training import build_model

    rng = np.random.default_rng(SEED + 1)
    tenure = rng.integers(0, 73, ROWS)
    monthly = np.round(rng.uniform(20, 120, ROWS), 2)
    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": np.round(tenure * monthly + rng.normal(0, 50, ROWS), 2),
            "support_calls": rng.poisson(1.5, ROWS),
            "data_usage_gb": np.round(rng.gamma(2.0, 5.0, ROWS), 1),
            "age": rng.integers(18, 81, ROWS),
            "dependents": rng.integers(0, 5, ROWS),
            **{name: rng.choice(values, ROWS) for name, values in CHURN_TEXT.items()},
        }
    )
    score = (
        (frame["contract"] == "month-to-month") * 1.2
        - frame["tenure_months"] / 30
        + frame["support_calls"] * 0.4
        + (frame["internet_service"] == "fiber optic") * 0.5
        + rng.normal(0, 1, ROWS)
    )
    model = build_model(frame, "classification", "hist_gradient_boosting", seed=SEED)
    return model.fit(frame, (score > 0).astype(int)), frame


def raw_predict_us(model: Any, row: pd.DataFrame) -> float:
    """µs per in-process ``predict_proba`` call on a one-row DataFrame, one native thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(50):
            model.predict_proba(row)
        started = time.perf_counter()
        calls = 1000
        for _ in range(calls):
            model.predict_proba(row)
    return (time.perf_counter() - started) / calls * 1e6


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The v2 datatype of a column."""
    if dtype.kind == "f":
        return "FP64"
    if dtype.kind in "iu":
        return "INT64"
    return "BYTES"


def v2_columns(row: pd.DataFrame, text_parameters: bool) -> list[dict[str, Any]]:
    """One v2 tensor per column of ``row``; MLServer wants its text marked as ``str``."""
    tensors = []
    for name in row.columns:
        datatype = v2_datatype(row[name].dtype)
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": datatype,
            "shape": [len(row)],
            "data": row[name].tolist(),
        }
        if datatype == "BYTES" and text_parameters:
            tensor["parameters"] = {"content_type": "str"}
        tensors.append(tensor)
    return tensors


def v2_body(row: pd.DataFrame, mlserver: bool = False) -> str:
    """A v2 request for ``row``, the same for both servers: one FP64 ``[rows, columns]``
    tensor when every column is a float (MLServer's numpy codec), else one tensor per column
    (for MLServer with its pandas codec and text marked ``str``)."""
    if all(row[c].dtype.kind == "f" for c in row.columns):
        tensor = {
            "name": "input-0",
            "datatype": "FP64",
            "shape": list(row.shape),
            "data": row.to_numpy().ravel().tolist(),
        }
        return json.dumps({"inputs": [tensor]})
    inputs = v2_columns(row, text_parameters=mlserver)
    if mlserver:
        return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs})
    return json.dumps({"inputs": inputs})


def bodies(row: pd.DataFrame) -> dict[str, str]:
    """The shipyard request bodies of one row, by protocol."""
    split = json.loads(row.to_json(orient="split", index=False))
    return {
        "native": row.to_json(orient="records"),
        "mlflow": json.dumps({"dataframe_split": split}),
        "v2": v2_body(row),
    }


def register(
    work: Path, hgb: Any, frame: pd.DataFrame, churn: Any, churn_frame: pd.DataFrame, bindir: Path
) -> None:
    """The project: ``hgb`` and ``churn`` registered natively, ``hgb-mlflow`` imported."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from shipyard import Project

    with Project.init(work / "project", name="bench") as project:
        project.registry.register("hgb", hgb, input_example=frame.head(50), trust=True)
        project.registry.register("churn", churn, input_example=churn_frame.head(200), trust=True)
    folder = work / "mlflow-model"
    signature = infer_signature(frame.head(50), hgb.predict(frame.head(50)))
    mlflow.sklearn.save_model(
        hgb, str(folder), signature=signature, serialization_format="cloudpickle"
    )
    subprocess.run(
        [
            str(bindir / "shipyard"),
            "models",
            "import-mlflow",
            str(folder),
            "--name",
            "hgb-mlflow",
            "--trust",
            "--project",
            str(work / "project"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
