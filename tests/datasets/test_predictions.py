"""The predictions store on SQLite and PostgreSQL: batch jobs and the online log as one stream."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from tests.helpers import make_frame

from shipyard import Project
from shipyard.core.exceptions import InvalidArgumentError
from shipyard.datasets.predictions import (
    ROW_COLUMNS,
    JobInfo,
    PredictionStore,
    RowFilter,
    encode_cursor,
)
from shipyard.serving.base import Prediction
from shipyard.serving.predlog import PredictionLog

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


@dataclass
class Scored:
    """A project holding two batch jobs and a few logged requests, and when each happened."""

    project: Project
    keyed: JobInfo  # churn:1, key customer_id, 200 rows in 4 parts
    plain: JobInfo  # churn:2, no key (row_id), 150 rows in 3 parts
    between: datetime  # after the keyed job, before the plain one
    before_online: datetime

    @property
    def store(self) -> PredictionStore:
        return self.project.predictions


def customers(rows: int, seed: int) -> pd.DataFrame:
    frame, _ = make_frame(rows, seed)
    frame.insert(0, "customer_id", [f"c{seed}-{i:04d}" for i in range(rows)])
    return frame


def log_requests(project: Project) -> None:
    """Three answered requests of churn:1 (two rows each), one of ``other``, one shadow."""
    log = PredictionLog(project.database)
    columns = {"tenure": np.array([1, 2]), "charges": np.array([10.0, np.nan])}
    answer = Prediction(np.array([1, 0]), np.array([[0.25, 0.75], [0.5, 0.5]]), [0, 1])
    for number in range(3):
        log.record("churn", 1, f"req-{number}", 0.002, columns, answer)
    log.record("other", 1, "req-other", 0.001, {"x": np.array([3.0])}, Prediction([7.5]))
    log.record("churn", 2, "req-shadow", 0.001, columns, answer, shadow=True)
    assert log.flush() == 5


def scored_project(project: Project, trained: Trained, tmp_path: Path) -> Scored:
    model, frame, _ = trained
    for _ in range(2):
        project.registry.register("churn", model, input_example=frame.head(5), trust=True)
    keyed_input, plain_input = tmp_path / "keyed.parquet", tmp_path / "plain.csv"
    customers(200, 1).to_parquet(keyed_input)
    customers(150, 2).drop(columns="customer_id").to_csv(plain_input, index=False)
    keyed = project.predict("churn:1", str(keyed_input), keys=("customer_id",), chunk_rows=64).job
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    plain = project.predict("churn:2", str(plain_input), chunk_rows=64).job
    time.sleep(0.01)
    before_online = datetime.now(UTC)
    log_requests(project)
    return Scored(project, keyed, plain, between, before_online)


@pytest.fixture
def scored(project: Project, trained: Trained, tmp_path: Path) -> Scored:
    """The suite's project (each backend) with two batch jobs and logged requests."""
    return scored_project(project, trained, tmp_path)


def every_row(store: PredictionStore, where: RowFilter, limit: int) -> list[dict[str, Any]]:
    """All pages of ``limit`` rows, concatenated; every page but the last is full."""
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        page, cursor = store.rows(where, cursor=cursor, limit=limit)
        rows.extend(page)
        if cursor is None:
            return rows
        assert len(page) == limit
    raise AssertionError("the pages never ended")


def identity(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["source"], row["batch_id"], row["request_id"], row["key"])


def expected_batch(scored: Scored, job: JobInfo) -> list[tuple[Any, ...]]:
    assert job.dataset is not None
    out = scored.project.datasets.read(job.dataset)
    keys = out["customer_id"] if job.key_columns else out["row_id"].astype(str)
    return [("batch", job.id, None, key) for key in keys]


ONLINE = [("online", None, f"req-{n}", f"req-{n}") for n in range(3) for _ in range(2)]


def test_pages_concatenate_to_every_row_exactly_once_in_a_stable_order(scored: Scored) -> None:
    everything = every_row(scored.store, RowFilter(), limit=100_000)
    expected = [
        *expected_batch(scored, scored.keyed),
        *expected_batch(scored, scored.plain),
        *ONLINE,
        ("online", None, "req-other", "req-other"),
    ]
    assert [identity(r) for r in everything] == expected  # the shadow answer is not there
    for limit in (9, 64, 201):  # inside parts, at part ends, across jobs
        assert every_row(scored.store, RowFilter(), limit) == everything, limit
    online = RowFilter(source="online")
    assert every_row(scored.store, online, 1) == everything[-7:]  # inside logged requests
    # the rows carry what was scored, with timezone-aware times
    dataset = scored.project.datasets.read(scored.keyed.dataset or "")
    first = everything[0]
    assert set(first) == set(ROW_COLUMNS)
    assert first["model"] == "churn"
    assert first["version"] == 1
    assert first["prediction"] == dataset["prediction"][0]
    assert first["probabilities"] == [dataset["proba_0"][0], dataset["proba_1"][0]]
    assert first["scored_at"] == dataset["scored_at"][0].to_pydatetime()
    online = everything[-7]  # req-0, its first row
    assert online["prediction"] == 1
    assert online["probabilities"] == [0.25, 0.75]
    assert online["scored_at"].tzinfo is not None
    assert everything[-1]["probabilities"] is None
    # a full last page has no next cursor; a short limit has one
    page, cursor = scored.store.rows(RowFilter(), limit=len(everything))
    assert len(page) == len(everything)
    assert cursor is None
    assert scored.store.rows(RowFilter(), limit=len(everything) - 1)[1] is not None


def test_every_filter_keeps_what_it_names(scored: Scored) -> None:
    store = scored.store

    def ids(**where: Any) -> list[tuple[Any, ...]]:
        return [identity(r) for r in every_row(store, RowFilter(**where), limit=50)]

    keyed, plain = expected_batch(scored, scored.keyed), expected_batch(scored, scored.plain)
    other = [("online", None, "req-other", "req-other")]
    assert ids(model="churn") == [*keyed, *plain, *ONLINE]
    assert ids(model="other") == other
    assert ids(model="nobody") == []
    assert ids(model="churn", version=2) == plain
    assert ids(version=1) == [*keyed, *ONLINE, *other]
    assert ids(source="batch") == [*keyed, *plain]
    assert ids(source="online") == [*ONLINE, *other]
    assert ids(until=scored.between) == keyed
    assert ids(since=scored.between, until=scored.before_online) == plain
    assert ids(since=scored.before_online) == [*ONLINE, *other]
    # naive times are UTC
    naive = scored.before_online.astimezone(UTC).replace(tzinfo=None)
    assert ids(since=naive) == [*ONLINE, *other]
    # a key: on the key column, on row_id, on the request id
    assert ids(key="c1-0123") == [keyed[123]]
    assert ids(key="17") == [plain[17]]
    assert ids(key="req-1") == ONLINE[2:4]
    assert ids(key="req-1", source="batch") == []
    assert ids(key="missing") == []


def test_bad_cursors_and_filters_are_refused(project: Project) -> None:
    log_requests(project)
    store = project.predictions
    broken = [
        "not-a-cursor",
        "e30",  # {}
        encode_cursor({"s": "elsewhere"}),
        encode_cursor({"s": "batch", "p": "x"}),
        encode_cursor({"s": "online", "id": -4}),
    ]
    for cursor in broken:
        with pytest.raises(InvalidArgumentError, match="not one this server gave out"):
            store.rows(RowFilter(), cursor=cursor)
    _, cursor = store.rows(RowFilter(model="churn"), limit=3)
    with pytest.raises(InvalidArgumentError, match="given out for other filters"):
        store.rows(RowFilter(model="other"), cursor=cursor)
    with pytest.raises(InvalidArgumentError, match="at least 1"):
        store.rows(RowFilter(), limit=0)
    with pytest.raises(InvalidArgumentError, match="source must be one of batch, online"):
        RowFilter(source="both")
    later = datetime.now(UTC)
    with pytest.raises(InvalidArgumentError, match="is after until"):
        RowFilter(since=later, until=later - timedelta(seconds=1))


def test_prune_forgets_old_jobs_and_log_rows_but_keeps_the_newest_dataset(
    scored: Scored,
) -> None:
    store = scored.store
    # a client paging inside the first job when it is pruned goes on with the next job
    page, cursor = store.rows(RowFilter(), limit=10)
    removed = store.prune(datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1))
    assert removed == {"jobs": 1, "datasets": 1, "online": 5}
    assert [j.id for j in store.jobs()] == [scored.plain.id]
    versions = scored.project.datasets.versions("predictions/churn")
    assert [v.version for v in versions] == [2]  # the newest version stays
    rest = store.rows(RowFilter(), cursor=cursor, limit=100_000)[0]
    assert [identity(r) for r in rest] == expected_batch(scored, scored.plain)
    assert page[0]["batch_id"] == scored.keyed.id
    # nothing is older now: a second prune removes nothing
    assert store.prune(datetime.now(UTC) - timedelta(days=1)) == {
        "jobs": 0,
        "datasets": 0,
        "online": 0,
    }


def test_a_job_finishing_while_a_client_pages_comes_after_what_it_read(
    scored: Scored, tmp_path: Path
) -> None:
    store = scored.store
    where = RowFilter(source="batch")
    page, cursor = store.rows(where, limit=250)  # inside the plain job
    later = tmp_path / "later.parquet"
    customers(30, 3).to_parquet(later)
    third = scored.project.predict("churn:1", str(later), keys=("customer_id",)).job
    assert cursor is not None
    rest: list[dict[str, Any]] = []
    while cursor is not None:
        more, cursor = store.rows(where, cursor=cursor, limit=40)
        rest.extend(more)
    expected = [
        *expected_batch(scored, scored.keyed),
        *expected_batch(scored, scored.plain),
        *expected_batch(scored, third),
    ]
    assert [identity(r) for r in [*page, *rest]] == expected


def test_prune_removes_an_unfinished_jobs_scored_parts(project: Project, tmp_path: Path) -> None:
    store = PredictionStore(project.database, project.datasets)
    work = tmp_path / "batch" / "killed"
    (work / "parts").mkdir(parents=True)
    (work / "parts" / "part-000000.parquet").write_bytes(b"scored before a kill")
    store.create_job(
        id="killed", spec_hash="0" * 64, ref="churn", model="churn", version=1, input="",
        output="predictions/churn", engine="local", chunk_rows=10, key_columns=[],
        work_dir=str(work), created_by="tester",
    )  # fmt: skip
    assert store.prune(datetime.now(UTC) + timedelta(seconds=1))["jobs"] == 1
    assert not work.exists()
    assert store.jobs() == []
