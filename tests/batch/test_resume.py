"""Exactly once: parts written whole or not at all, and jobs killed at any instant resumed.

The kill tests run ``shipyard predict`` as a user does, in a subprocess, and SIGKILL it at
chosen moments: after its first part, mid-way, and after it recorded its dataset while it
writes its SQL export. The resumed job must hold every input row exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from tests.batch.support import (
    Trained,
    assert_scored,
    block_export,
    clean_env,
    customers,
    register_churn,
    shipyard_command,
)
from typer.testing import CliRunner

from shipyard import Project
from shipyard.batch.parts import clear_temporary, done_parts, part_name, write_part
from shipyard.cli.app import app

# -- parts -----------------------------------------------------------------------------------


def test_parts_are_renamed_into_place_and_temporaries_are_cleared(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    assert done_parts(str(folder)) == {}
    assert write_part(str(folder), 3, pa.table({"x": [1, 2, 3]})) == 3
    assert write_part(str(folder), 0, pa.table({"x": [1]})) == 1
    assert sorted(p.name for p in folder.iterdir()) == [part_name(0), part_name(3)]
    assert part_name(12) == "part-000012.parquet"
    (folder / ".tmp-deadbeef.parquet").write_bytes(b"half a part")  # what a kill leaves
    (folder / "notes.txt").write_text("not a part")
    assert done_parts(str(folder)) == {0: 1, 3: 3}
    clear_temporary(str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", part_name(0), part_name(3)]
    write_part(str(folder), 3, pa.table({"x": [7]}))  # a chunk scored again replaces its part
    assert done_parts(str(folder)) == {0: 1, 3: 1}


# -- resume in process -----------------------------------------------------------------------


def test_resume_with_nothing_to_resume_runs_a_new_job(local: Project, tmp_path: Path) -> None:
    customers(300).to_parquet(tmp_path / "in.parquet")
    first = local.predict("churn", str(tmp_path / "in.parquet"), chunk_rows=100, resume=True)
    assert not first.resumed
    again = local.predict("churn", str(tmp_path / "in.parquet"), chunk_rows=100, resume=True)
    assert not again.resumed  # the first job succeeded: there is nothing to continue
    assert again.job.id != first.job.id
    assert again.job.rows_reused == 0


def test_a_failed_job_resumes_reusing_its_chunks(
    local: Project, trained: Trained, tmp_path: Path
) -> None:
    frame = customers(1000)
    frame.to_csv(tmp_path / "in.csv", index=False)
    target = tmp_path / "scores.csv"
    options = {"output": str(target), "chunk_rows": 300, "keys": ("customer_id",)}
    # the export cannot replace a folder: the job fails once every chunk is scored
    with pytest.raises(OSError, match=r"scores\.csv"):
        local.predict("churn", str(tmp_path / "in.csv"), progress=block_export(target), **options)
    [failed] = local.predictions.jobs()
    assert failed.status == "failed"
    assert sorted(done_parts(str(Path(failed.work_dir) / "parts"))) == [0, 1, 2, 3]
    target.rmdir()
    result = local.predict("churn", str(tmp_path / "in.csv"), resume=True, **options)
    assert result.resumed
    assert result.job.id == failed.id
    assert (result.job.chunks_reused, result.job.rows_reused, result.job.rows) == (4, 1000, 1000)
    assert result.job.status == "succeeded"
    assert result.job.error == ""
    scored = local.datasets.read(result.job.dataset or "")
    assert_scored(scored, trained[0], frame, ["customer_id"])
    assert pd.read_csv(target)["customer_id"].tolist() == frame["customer_id"].tolist()
    assert [j.id for j in local.predictions.jobs()] == [failed.id]


def test_a_changed_input_starts_a_new_job(local: Project, tmp_path: Path) -> None:
    frame = customers(400)
    frame.drop(columns=["plan"]).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(Exception, match="the input has no column 'plan'"):
        local.predict("churn", str(tmp_path / "in.parquet"), chunk_rows=100)
    [failed] = local.predictions.jobs()
    frame.to_parquet(tmp_path / "in.parquet")  # fixed: same path, new content
    result = local.predict("churn", str(tmp_path / "in.parquet"), chunk_rows=100, resume=True)
    assert not result.resumed
    assert result.job.id != failed.id
    assert result.job.rows_reused == 0
    # other arguments are other jobs too: a different chunk size does not resume the job
    frame.drop(columns=["plan"]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(Exception, match="no column 'plan'"):
        local.predict("churn", str(tmp_path / "bad.parquet"), chunk_rows=100)
    frame.to_parquet(tmp_path / "bad.parquet")
    os.utime(tmp_path / "bad.parquet", ns=(1, 1))
    assert not local.predict(
        "churn", str(tmp_path / "bad.parquet"), chunk_rows=50, resume=True
    ).resumed


# -- SIGKILL at chosen instants --------------------------------------------------------------

ROWS = 60_000
CHUNK = 1_500
CHUNKS = ROWS // CHUNK
runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path, trained: Trained) -> Path:
    """A project made by ``Project.init`` (SQLite in .shipyard) with ``churn:1`` registered."""
    with Project.init(tmp_path / "proj") as project:
        register_churn(project, trained)
    return tmp_path / "proj"


def parts_written(root: Path) -> int:
    return len(list((root / ".shipyard" / "batch").glob("*/parts/part-*.parquet")))


def dataset_recorded(root: Path) -> Callable[[], bool]:
    engine = sa.create_engine(f"sqlite:///{root / '.shipyard' / 'shipyard.db'}")

    def recorded() -> bool:
        with engine.connect() as connection:
            query = "SELECT COUNT(*) FROM dataset_versions WHERE zone = 'predictions'"
            return bool(connection.exec_driver_sql(query).scalar())

    return recorded


def kill_when(root: Path, args: list[str], ready: Callable[[], bool], log: Path) -> None:
    """Run ``shipyard predict churn ARGS`` and SIGKILL it as soon as ``ready()``.

    Fails if the command ends on its own first: the kill must land mid-job.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*shipyard_command(), "predict", "churn", "--project", str(root), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            cwd=root,
        )
    try:
        deadline = time.monotonic() + 120
        while not ready():
            if proc.poll() is not None:
                pytest.fail(
                    f"shipyard predict ended (rc {proc.returncode}) before the kill:\n"
                    f"{log.read_text()}"
                )
            assert time.monotonic() < deadline, "shipyard predict made no progress in 120 s"
            time.sleep(0.003)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def resume(root: Path, args: list[str]) -> str:
    """``shipyard predict churn ARGS --resume`` run to the end (in this process); its stdout."""
    result = runner.invoke(app, ["predict", "churn", "--project", str(root), *args, "--resume"])
    assert result.exit_code == 0, result.output
    return result.stdout


def exactly_once(ids: list[int]) -> None:
    assert len(ids) == ROWS
    assert sorted(ids) == list(range(ROWS))


@pytest.mark.slow
def test_killed_after_its_first_part_and_while_finishing(
    folder: Path, trained: Trained, tmp_path: Path
) -> None:
    frame = customers(ROWS, seed=7)
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=7_000)
    out_db = f"sqlite:///{tmp_path / 'out.db'}"
    args = [
        "--input",
        str(tmp_path / "in.parquet"),
        "--chunk-rows",
        str(CHUNK),
        "--output",
        out_db,
        "--table",
        "scores",
    ]
    log = tmp_path / "predict.log"

    kill_when(folder, args, lambda: parts_written(folder) >= 1, log)
    assert 1 <= parts_written(folder) < CHUNKS
    # resumed: reuses the first parts, scores the rest, records the dataset version, and is
    # killed while it writes the SQL export
    kill_when(folder, [*args, "--resume"], dataset_recorded(folder), log)
    assert parts_written(folder) == CHUNKS

    out = json.loads(resume(folder, [*args, "--json"]))
    assert out["resumed"] is True
    assert out["status"] == "succeeded"
    assert (out["rows"], out["chunks"]) == (ROWS, CHUNKS)
    assert (out["rows_reused"], out["chunks_reused"]) == (ROWS, CHUNKS)

    with Project(folder) as project:
        [job] = project.predictions.jobs()  # one job, run three times
        assert job.id == out["id"]
        # the version recorded before the kill, not a second one
        versions = project.datasets.versions("predictions/churn")
        assert [d.ref for d in versions] == ["predictions/churn:1"]
        scored = project.datasets.read(job.dataset or "")
    exactly_once(scored["row_id"].tolist())
    assert_scored(scored, trained[0], frame)
    engine = sa.create_engine(out_db)
    table = pd.read_sql("SELECT row_id, batch_id FROM scores", engine)
    engine.dispose()
    exactly_once(table["row_id"].tolist())
    assert set(table["batch_id"]) == {job.id}
    assert not (folder / ".shipyard" / "batch" / job.id).exists()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_killed_mid_way_into_postgresql_resumes_and_says_so(
    folder: Path, trained: Trained, tmp_path: Path, database_url: str
) -> None:
    frame = customers(ROWS, seed=8)
    frame.to_csv(tmp_path / "in.csv", index=False)
    args = [
        "--input",
        str(tmp_path / "in.csv"),
        "--chunk-rows",
        str(CHUNK),
        "--key",
        "customer_id",
        "--output",
        database_url,
        "--table",
        "scores",
    ]
    kill_when(folder, args, lambda: parts_written(folder) >= CHUNKS // 2, tmp_path / "log")
    reused = parts_written(folder)
    assert reused < CHUNKS

    text = " ".join(resume(folder, args).split())
    assert f"Scored {ROWS:,} rows with churn:1" in text
    assert f"resumed: reused {reused} of {CHUNKS} chunks ({reused * CHUNK:,} rows)" in text
    assert f"scored {ROWS - reused * CHUNK:,} now" in text

    engine = sa.create_engine(database_url)
    table = pd.read_sql("SELECT customer_id, batch_id FROM scores", engine)
    engine.dispose()
    assert len(table) == ROWS
    assert sorted(table["customer_id"]) == frame["customer_id"].tolist()
    with Project(folder) as project:
        [job] = project.predictions.jobs()
        assert (job.rows_reused, job.chunks_reused) == (reused * CHUNK, reused)
        assert job.output.startswith("sql:postgresql+psycopg://postgres@127.0.0.1:5432/test")
        scored = project.datasets.read(job.dataset or "")
    assert set(table["batch_id"]) == {job.id}
    assert_scored(scored, trained[0], frame, ["customer_id"])
