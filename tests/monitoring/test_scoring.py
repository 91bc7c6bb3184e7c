"""The model's answers on a window, chunk by chunk, are its answers on the whole frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tests.monitoring.conftest import drifted_rows

from shipyard import Project
from shipyard.core.exceptions import SchemaError
from shipyard.monitoring import scoring
from shipyard.monitoring.parquet import ParquetRows
from shipyard.monitoring.windows import Window
from shipyard.registry.profiles import model_outputs


@pytest.mark.parametrize("source", ["frame", "table", "parquet"])
def test_chunks_give_the_whole_frames_answers(
    monitored: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    monkeypatch.setattr(scoring, "CHUNK_ROWS", 64)
    frame, _ = drifted_rows(1000)
    frame.loc[::9, "charges"] = np.nan
    frame.to_parquet(tmp_path / "w.parquet", row_group_size=150)
    rows = ParquetRows(tmp_path / "w.parquet")
    data = {"frame": frame, "table": rows.table(), "parquet": rows}[source]
    window = Window(data, "test", encoded=rows.encoded if source != "frame" else frozenset())
    loaded = monitored.registry.load("churn:1")
    assert loaded.signature is not None
    seen: list[int] = []
    whole = scoring.answers

    def chunk(loaded: Any, frame: pd.DataFrame) -> pa.Table:
        seen.append(len(frame))
        return whole(loaded, frame)

    monkeypatch.setattr(scoring, "answers", chunk)
    answers = scoring.score(loaded, window, loaded.signature)
    expected = model_outputs(loaded, frame)
    assert answers.column_names == list(expected.columns)
    for name in expected.columns:
        np.testing.assert_array_equal(answers.column(name).to_numpy(), expected[name].to_numpy())
    assert sum(seen) == 1000
    assert max(seen) <= 64


def test_numbers_held_as_text_reach_the_model_as_numbers(monitored: Project) -> None:
    frame, _ = drifted_rows(300)
    loaded = monitored.registry.load("churn:1")
    assert loaded.signature is not None
    text = pa.Table.from_pandas(frame.assign(tenure=frame["tenure"].astype("str")))
    answers = scoring.score(loaded, Window(text, "test"), loaded.signature)
    expected = model_outputs(loaded, frame)
    np.testing.assert_array_equal(answers.column("proba_1").to_numpy(), expected["proba_1"])


def test_rows_without_a_signature_column_are_refused(monitored: Project) -> None:
    frame, _ = drifted_rows(10)
    loaded = monitored.registry.load("churn:1")
    assert loaded.signature is not None
    window = Window(pd.DataFrame(frame.drop(columns="plan")), "test")
    with pytest.raises(SchemaError, match="missing column 'plan'"):
        scoring.score(loaded, window, loaded.signature)
