"""The Dask engine on real LocalClusters: the local engine's output, one model load per worker.

Three cluster start-ups in all (each costs seconds): two ``local-cluster`` jobs and one
cluster started by the test, whose address is given as the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client, LocalCluster
from tests.batch.support import (
    Trained,
    assert_scored,
    block_export,
    customers,
    write_parquet_folder,
)

from shipyard import Project

pytestmark = pytest.mark.slow
VARYING = ["scored_at", "batch_id"]  # the only columns two jobs on the same rows differ in


def same_output(project: Project, local: str, dask: str) -> None:
    ours = project.datasets.read(local).drop(columns=VARYING)
    theirs = project.datasets.read(dask).drop(columns=VARYING)
    pd.testing.assert_frame_equal(theirs, ours)


def test_local_cluster_on_a_parquet_folder_matches_the_local_engine(
    local: Project, trained: Trained, tmp_path: Path
) -> None:
    frame = customers(3000)
    write_parquet_folder(tmp_path / "in", frame, [1000, 1500, 500], 400)
    options = {"chunk_rows": 350, "keys": ("customer_id",)}
    here = local.predict("churn", str(tmp_path / "in"), **options)
    there = local.predict(
        "churn",
        str(tmp_path / "in"),
        engine="dask",
        scheduler="local-cluster",
        workers=1,  # one worker process costs seconds of start-up: two are tested below
        **options,
    )
    assert (there.job.engine, there.job.rows, there.job.chunks) == ("dask", 3000, 9)
    assert there.job.status == "succeeded"
    same_output(local, here.job.dataset or "", there.job.dataset or "")
    assert_scored(local.datasets.read(there.job.dataset or ""), trained[0], frame, ["customer_id"])


def test_local_cluster_on_a_csv_file_matches_the_local_engine(
    local: Project, tmp_path: Path
) -> None:
    customers(2000).to_csv(tmp_path / "in.csv", index=False)
    here = local.predict("churn", str(tmp_path / "in.csv"), chunk_rows=300)
    there = local.predict(  # the client reads the CSV and scatters its chunks to the worker
        "churn",
        str(tmp_path / "in.csv"),
        chunk_rows=300,
        engine="dask",
        scheduler="local-cluster",
        workers=1,
    )
    assert (there.job.rows, there.job.chunks) == (2000, 7)
    same_output(local, here.job.dataset or "", there.job.dataset or "")


@pytest.fixture
def cluster() -> Iterator[tuple[LocalCluster, Client]]:
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=40,
        ) as started,
        Client(started) as client,
    ):
        yield started, client


def loads(client: Client) -> dict[str, int]:
    return dict(client.run(lambda dask_worker: getattr(dask_worker, "shipyard_model_loads", 0)))


def test_a_scheduler_address_loads_the_model_once_per_worker(
    local: Project, trained: Trained, tmp_path: Path, cluster: tuple[LocalCluster, Client]
) -> None:
    started, client = cluster
    frame = customers(4000)
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=500)
    address = started.scheduler_address
    result = local.predict(
        "churn", str(tmp_path / "in.parquet"), chunk_rows=200, engine="dask", scheduler=address
    )
    assert result.job.chunks == 20
    assert list(loads(client).values()) == [1, 1]  # 20 chunks, one load on each worker
    # the job's model is forgotten when it ends
    held = client.run(lambda dask_worker: len(getattr(dask_worker, "shipyard_scorers", {})))
    assert list(held.values()) == [0, 0]
    assert_scored(local.datasets.read(result.job.dataset or ""), trained[0], frame)

    # a failed local job resumed on the cluster: only its missing chunks go to the workers
    target = tmp_path / "scores.csv"
    options = {"chunk_rows": 200, "output": str(target)}
    with pytest.raises(OSError, match=r"scores\.csv"):
        local.predict(
            "churn", str(tmp_path / "in.parquet"), progress=block_export(target), **options
        )
    [_, failed] = local.predictions.jobs()
    parts = Path(failed.work_dir) / "parts"
    for number in (3, 7, 19):
        (parts / f"part-{number:06d}.parquet").unlink()
    target.rmdir()
    resumed = local.predict(
        "churn",
        str(tmp_path / "in.parquet"),
        resume=True,
        engine="dask",
        scheduler=address,
        **options,
    )
    assert resumed.resumed
    assert (resumed.job.chunks_reused, resumed.job.rows_reused) == (17, 3400)
    assert list(loads(client).values()) == [2, 2]  # one load per worker per job
    assert_scored(local.datasets.read(resumed.job.dataset or ""), trained[0], frame)
    assert pd.read_csv(target)["row_id"].tolist() == list(range(4000))
