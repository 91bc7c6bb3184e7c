"""What the batch tests share: inputs of a known shape and the check that predictions are right."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.pipeline import Pipeline
from tests.helpers import make_frame

from shipyard import Project

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]

FEATURES = ["tenure", "charges", "plan"]
OUTPUT_COLUMNS = [
    "prediction",
    "proba_0",
    "proba_1",
    "model",
    "model_version",
    "scored_at",
    "batch_id",
]


def register_churn(project: Project, trained: Trained) -> None:
    """Register the suite's trained pipeline as ``churn`` (version 1 in a new project)."""
    model, frame, _ = trained
    project.registry.register("churn", model, input_example=frame.head(5), trust=True)


def customers(rows: int, seed: int = 1) -> pd.DataFrame:
    """Rows to score: the model's features plus a string key ``customer_id`` and an int ``n``."""
    frame, _ = make_frame(rows, seed)
    frame.insert(0, "customer_id", [f"c{i:07d}" for i in range(rows)])
    frame["n"] = np.arange(rows, dtype=np.int64)
    return frame


def assert_scored(
    out: pd.DataFrame, model: Pipeline, frame: pd.DataFrame, keys: list[str] | None = None
) -> None:
    """``out`` holds, row for row and in input order, the model's own answers for ``frame``."""
    assert len(out) == len(frame)
    if keys:
        assert list(out.columns) == [*keys, *OUTPUT_COLUMNS]
        for key in keys:
            assert out[key].tolist() == frame[key].tolist()
    else:
        assert list(out.columns) == ["row_id", *OUTPUT_COLUMNS]
        assert out["row_id"].tolist() == list(range(len(frame)))
    features = frame[FEATURES].reset_index(drop=True)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), model.predict(features))
    proba = model.predict_proba(features)
    np.testing.assert_allclose(out[["proba_0", "proba_1"]].to_numpy(), proba, rtol=1e-12)
    assert set(out["model"]) == {"churn"}
    assert out["model_version"].dtype == np.int32
    assert str(out["scored_at"].dtype) == "datetime64[us, UTC]"
    assert out["batch_id"].nunique() == 1


def write_parquet_folder(folder: Path, frame: pd.DataFrame, sizes: list[int], groups: int) -> None:
    """``frame`` cut into files of ``sizes`` rows, each in row groups of ``groups`` rows."""
    folder.mkdir(parents=True)
    start = 0
    for number, size in enumerate(sizes):
        table = pa.Table.from_pandas(frame.iloc[start : start + size], preserve_index=False)
        pq.write_table(table, folder / f"data-{number:02d}.parquet", row_group_size=groups)
        start += size
    assert start == len(frame)


def block_export(target: Path) -> Callable[[int, int | None], None]:
    """A progress callback that puts a folder where the job's file export goes, once the job
    has started (after its output was checked): the job fails when every chunk is scored."""

    def progress(done: int, total: int | None) -> None:
        target.mkdir(exist_ok=True)

    return progress


def shipyard_command() -> list[str]:
    """The venv's ``shipyard`` executable, as a user runs it."""
    exe = Path(sys.executable).parent / "shipyard"
    return [str(exe)] if exe.exists() else [sys.executable, "-c", _MAIN]


_MAIN = "import sys; from shipyard.cli.app import main; sys.argv[0] = 'shipyard'; main()"


def clean_env() -> dict[str, str]:
    """A subprocess's environment: the project's own settings, no inherited store URLs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env["COLUMNS"] = "400"  # one line a message, however long its URLs
    env["OMP_NUM_THREADS"] = "1"  # as in the suite's own process (conftest.py)
    return env
