"""Dataset versions in zones, on SQLite and PostgreSQL: fingerprints, versions, atomic commits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.helpers import make_settings

from shipyard import InvalidReferenceError, NotFoundError, Project
from shipyard.core.exceptions import InvalidArgumentError


@pytest.fixture
def project(tmp_path: Path, database_url: str) -> Iterator[Project]:
    with Project(settings=make_settings(tmp_path / "p", database_url)) as opened:
        yield opened


FRAME = pd.DataFrame({"id": [1, 2, 3], "plan": ["a", "b", None], "x": [0.5, np.nan, 2.0]})


def test_same_content_same_fingerprint_and_no_new_version(project: Project) -> None:
    first = project.datasets.write("raw/customers", FRAME, source="csv:x.csv")
    again = project.datasets.write("raw/customers", FRAME.iloc[::-1].iloc[::-1].copy())
    assert first.version == 1
    assert again.reused
    assert again.version == 1
    assert again.fingerprint == first.fingerprint
    changed = project.datasets.write("raw/customers", FRAME.assign(x=1.0))
    assert changed.version == 2
    assert changed.fingerprint != first.fingerprint
    assert [v.version for v in project.datasets.versions("raw/customers")] == [2, 1]


def test_read_head_get_and_list(project: Project) -> None:
    project.datasets.write("raw/customers", FRAME)
    project.datasets.write("processed/features", FRAME[["id", "x"]], run_id="r1", step="s")
    back = project.datasets.read("raw/customers:1")
    pd.testing.assert_frame_equal(back, FRAME)
    assert list(project.datasets.head("raw/customers", 2)["id"]) == [1, 2]
    assert project.datasets.read("raw/customers", columns=["id"]).shape == (3, 1)
    info = project.datasets.get("processed/features")
    assert (info.row_count, info.run_id, info.step) == (3, "r1", "s")
    assert info.columns == [{"name": "id", "dtype": "int64"}, {"name": "x", "dtype": "float64"}]
    assert [d.ref for d in project.datasets.list()] == ["raw/customers:1", "processed/features:1"]
    assert [d.ref for d in project.datasets.list("processed")] == ["processed/features:1"]


def test_commit_records_all_staged_frames_or_none(project: Project) -> None:
    staged = [
        project.datasets.stage("processed/a", FRAME),
        project.datasets.stage("processed/b", FRAME.head(1)),
    ]
    assert project.datasets.list() == []  # staged bytes are not versions
    infos = project.datasets.commit(staged, run_id="r", step="s")
    assert [i.ref for i in infos] == ["processed/a:1", "processed/b:1"]


def test_bad_references_and_values(project: Project) -> None:
    with pytest.raises(InvalidReferenceError, match="ZONE/NAME"):
        project.datasets.get("lake/customers")
    with pytest.raises(NotFoundError, match="no dataset raw/nothing"):
        project.datasets.get("raw/nothing")
    with pytest.raises(InvalidArgumentError, match="versions are numbered by shipyard"):
        project.datasets.write("raw/customers:4", FRAME)
    with pytest.raises(InvalidArgumentError, match="must be a pandas DataFrame"):
        project.datasets.write("raw/customers", [1, 2])  # type: ignore[arg-type]
