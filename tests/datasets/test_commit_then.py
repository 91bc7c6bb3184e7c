"""``Datasets.commit(then=...)``: what ``then`` writes lands with the versions, or neither does."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.orm import Session

from shipyard import Project
from shipyard.datasets import DatasetInfo
from shipyard.datasets.run_records import Runs


def test_a_failure_inside_then_records_no_version(project: Project, tmp_path: Path) -> None:
    staged = project.datasets.stage("processed/out", pd.DataFrame({"x": [1, 2]}))

    def refuse(_session: Session, infos: list[DatasetInfo]) -> None:
        assert [i.ref for i in infos] == ["processed/out:1"]  # written, not yet committed
        raise RuntimeError("the success record failed")

    with pytest.raises(RuntimeError, match="success record failed"):
        project.datasets.commit([staged], then=refuse)
    assert not project.datasets.exists("processed/out")


def test_then_writes_in_the_same_transaction(project: Project, tmp_path: Path) -> None:
    runs = Runs(project.database)
    runs.create(
        run_id="r1", pipeline="p", steps=["s"], params={}, trigger="manual", actor="ann",
        log_root=tmp_path,
    )  # fmt: skip
    staged = project.datasets.stage("processed/out", pd.DataFrame({"x": [1, 2]}))

    def succeed(session: Session, infos: list[DatasetInfo]) -> None:
        runs.update_step(
            "r1", "s", session=session, status="succeeded", outputs={"v": infos[0].ref}
        )

    [info] = project.datasets.commit([staged], run_id="r1", step="s", then=succeed)
    step = runs.get("r1").step("s")
    assert (step.status, step.outputs) == ("succeeded", {"v": info.ref})
    assert project.datasets.get("processed/out").run_id == "r1"
