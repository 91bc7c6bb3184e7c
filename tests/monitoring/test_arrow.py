"""The monitor reads Parquet with Arrow and scores it in chunks: its report is the one computed
on whole pandas frames, the way it was computed before (to 1e-12), whatever the chunks."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.monitoring.conftest import checked, drifted_rows, reference_rows

from shipyard import Project
from shipyard.core.exceptions import SchemaError
from shipyard.core.schema import Signature
from shipyard.monitoring import scoring
from shipyard.monitoring.windows import META_COLUMNS
from shipyard.registry.profiles import categorical_columns, model_outputs, with_outputs
from shipyard.statistics.drift import DriftOptions, compare
from shipyard.statistics.quality import check_quality

FEATURES = ["tenure", "charges", "plan"]


def the_old_way(project: Project, reference: Path, current: Path, target: str) -> dict[str, Any]:
    """Drift, prediction drift and quality as ``run_monitor`` computed them before it read
    Arrow: each file read whole into pandas, the model run on whole frames, the statistics
    given those frames."""
    info = project.registry.get("churn:1")
    signature = info.signature
    assert signature is not None
    loaded = project.registry.load("churn:1")
    old_reference = with_outputs(loaded, pd.read_parquet(reference))
    frame = pd.read_parquet(current)
    frame = pd.concat([frame, model_outputs(loaded, frame[signature.columns])], axis=1)
    categorical = categorical_columns(signature, frame, classifier=True)
    options = DriftOptions(categorical=categorical)
    outputs = [c for c in frame.columns if c == "prediction" or str(c).startswith("proba_")]
    ranged = []
    for spec in signature.inputs:
        if spec.is_numeric:
            values = pd.to_numeric(old_reference[spec.name], errors="coerce")
            spec = replace(spec, minimum=float(values.min()), maximum=float(values.max()))
        ranged.append(spec)
    categories = {
        c: [str(v) for v in old_reference[c].dropna().unique()]
        for c in signature.columns
        if c in categorical
    }
    quality = check_quality(
        frame,
        Signature(tuple(ranged), signature.outputs),
        reference_categories=categories,
        ignore=META_COLUMNS | set(outputs) | {target},
    )
    drift = compare(old_reference, frame[FEATURES], options, columns=FEATURES)
    prediction = compare(old_reference, frame[outputs], options, columns=outputs).to_dict()
    for rows in ("reference_rows", "current_rows"):  # the report has them once, under "rows"
        del prediction[rows]
    return {
        "columns": drift.to_dict()["columns"],
        "prediction_drift": prediction,
        "quality": quality.to_dict(),
    }


def assert_same(ours: Any, theirs: Any, where: str = "report") -> None:
    """Equal, floats to 1e-12 (relative to their size)."""
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs), where
        for key, value in theirs.items():
            assert_same(ours[key], value, f"{where}.{key}")
    elif isinstance(theirs, list | tuple):
        assert len(ours) == len(theirs), where
        for number, (mine, value) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(mine, value, f"{where}[{number}]")
    elif isinstance(theirs, float) and not isinstance(ours, bool):
        assert math.isclose(ours, theirs, rel_tol=1e-12, abs_tol=1e-12), (where, ours, theirs)
    else:
        assert ours == theirs, where


def awkward_rows(rows: int, seed: int) -> pd.DataFrame:
    """Drifted rows with what a window meets: nulls in every column, an unseen category,
    repeated rows and a truth column."""
    frame, target = drifted_rows(rows, seed=seed)
    rng = np.random.default_rng(seed)
    frame.loc[rng.random(rows) < 0.05, "plan"] = None
    frame.loc[rng.random(rows) < 0.02, "plan"] = "platinum"
    frame.loc[rng.random(rows) < 0.1, "charges"] = np.nan
    frame = pd.concat([frame.assign(churned=target), frame.iloc[:40].assign(churned=1)])
    return frame.reset_index(drop=True)


@pytest.mark.parametrize("chunk_rows", [97, 100_000])
def test_the_report_equals_the_one_computed_on_pandas_frames(
    monitored: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    monkeypatch.setattr(scoring, "CHUNK_ROWS", chunk_rows)
    reference, _ = reference_rows(3000, seed=21)
    reference.loc[::17, "charges"] = np.nan
    ref_path, cur_path = tmp_path / "reference.parquet", tmp_path / "current.parquet"
    pq.write_table(pa.Table.from_pandas(reference), ref_path, row_group_size=500)
    pq.write_table(pa.Table.from_pandas(awkward_rows(2000, 22)), cur_path, row_group_size=300)
    outcome = monitored.monitor(
        "churn", reference=str(ref_path), current=str(cur_path), target="churned"
    )
    report = checked(monitored, outcome)
    expected = the_old_way(monitored, ref_path, cur_path, target="churned")
    assert_same(report["columns"], expected["columns"], "columns")
    assert_same(report["prediction_drift"], expected["prediction_drift"], "prediction_drift")
    assert_same(report["quality"], expected["quality"], "quality")
    assert report["quality"]["duplicates"] >= 40
    assert report["quality"]["columns"][2]["unseen_examples"] == ["platinum"]
    assert report["performance"]["rows"] == 2040
    assert report["notes"] == []


def test_parquet_csv_and_a_dataset_give_one_report(monitored: Project, tmp_path: Path) -> None:
    frame = awkward_rows(1500, 31)
    reference, _ = reference_rows(2000, seed=32)
    frame.to_csv(tmp_path / "current.csv", index=False)
    frame.to_parquet(tmp_path / "current.parquet")
    reference.to_parquet(tmp_path / "reference.parquet")
    dataset = monitored.datasets.write("processed/current", frame)
    reports = [
        monitored.monitor(
            "churn",
            reference=str(tmp_path / "reference.parquet"),
            current=current,
            target="churned",
            save=False,
        ).report
        for current in (
            str(tmp_path / "current.parquet"),
            str(tmp_path / "current.csv"),
            dataset.ref,
        )
    ]
    for report in reports:
        for varying in ("computed_at", "current"):
            report.pop(varying)
    assert_same(reports[1], reports[0], "csv")
    assert_same(reports[2], reports[0], "dataset")


def test_numbers_held_as_text_are_read_as_numbers(monitored: Project, tmp_path: Path) -> None:
    """pandas 3 writes its default string dtype as Arrow ``large_string``."""
    frame, _ = drifted_rows(800)
    reference, _ = reference_rows(1000, seed=41)
    as_text = frame.assign(tenure=frame["tenure"].astype("str"))
    assert (
        pq.read_schema(write_to(as_text, tmp_path / "text.parquet")).field("tenure").type
        == pa.large_string()
    )
    write_to(frame, tmp_path / "numbers.parquet")
    write_to(reference.assign(tenure=reference["tenure"].astype("str")), tmp_path / "ref.parquet")
    write_to(reference, tmp_path / "ref-numbers.parquet")
    text = monitored.monitor(
        "churn",
        reference=str(tmp_path / "ref.parquet"),
        current=str(tmp_path / "text.parquet"),
        save=False,
    ).report
    numbers = monitored.monitor(
        "churn",
        reference=str(tmp_path / "ref-numbers.parquet"),
        current=str(tmp_path / "numbers.parquet"),
        save=False,
    ).report
    assert_same(text["columns"], numbers["columns"], "columns")
    assert_same(text["prediction_drift"], numbers["prediction_drift"], "prediction_drift")
    assert text["notes"] == []
    [change] = text["quality"]["changed_types"]
    assert (change["column"], change["expected"], change["actual"]) == ("tenure", "int64", "string")
    # text that is no number: missing for the drift test, a type violation for quality
    frame = as_text.assign(tenure=as_text["tenure"].where(as_text.index % 10 != 0, "n/a"))
    report = monitored.monitor(
        "churn", current=str(write_to(frame, tmp_path / "bad.parquet")), save=False
    ).report
    assert [c["column"] for c in report["columns"]] == FEATURES
    assert report["quality"]["columns"][0]["type_violations"] == 80
    assert report["prediction_drift"] is None
    [note] = report["notes"]
    assert note.startswith("the current rows could not be scored")
    assert "tenure" in note


def test_a_window_that_does_not_fit_is_described_whole(
    monitored: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note names the whole window's problem, not the first chunk's."""
    frame, _ = drifted_rows(900)
    text = frame["tenure"].astype("str").where(frame.index < 500, "soon")
    path = str(write_to(frame.assign(tenure=text), tmp_path / "late.parquet"))
    loaded = monitored.registry.load("churn:1")
    with pytest.raises(SchemaError) as whole:
        loaded.prepare(pd.read_parquet(path).astype({"tenure": object}))
    monkeypatch.setattr(scoring, "CHUNK_ROWS", 100)
    [note] = monitored.monitor("churn", current=path, save=False).report["notes"]
    assert note == f"the current rows could not be scored, so no prediction drift: {whole.value}"


def write_to(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path)
    return path
