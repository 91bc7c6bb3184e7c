"""File and folder exports (``--output``): Parquet and CSV files, folders of Parquet parts, on
this machine, on fsspec's memory filesystem and on a real S3 server (moto, on loopback)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow.parquet as pq
import pytest
from tests.batch.support import Trained, assert_scored, customers

from shipyard import Project
from shipyard.batch.exports import _replace_parts
from shipyard.batch.outputs import parse_output
from shipyard.core.exceptions import DataSourceError, InvalidArgumentError, MissingDependencyError


@pytest.fixture
def source(tmp_path: Path) -> tuple[str, pd.DataFrame]:
    """An input of 500 customers as Parquet."""
    frame = customers(500)
    frame.to_parquet(tmp_path / "in.parquet")
    return str(tmp_path / "in.parquet"), frame


@pytest.fixture
def memory() -> Iterator[str]:
    """A folder of fsspec's in-memory filesystem, removed afterwards."""
    root = f"memory://tests-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def zone(project: Project, dataset: str | None) -> pd.DataFrame:
    return project.datasets.read(dataset or "")


def test_a_parquet_file_holds_the_zones_rows_a_row_group_per_chunk(
    local: Project, trained: Trained, source: tuple[str, pd.DataFrame], tmp_path: Path
) -> None:
    path, frame = source
    target = tmp_path / "out" / "scores.parquet"
    result = local.predict("churn", path, output=str(target), chunk_rows=200)
    assert result.job.output == f"parquet:{target}"
    assert [p.name for p in target.parent.iterdir()] == ["scores.parquet"]  # no temporary left
    assert pq.ParquetFile(target).metadata.num_row_groups == 3
    written = pd.read_parquet(target)
    pd.testing.assert_frame_equal(written, zone(local, result.job.dataset))
    assert_scored(written, trained[0], frame)
    again = local.predict("churn", path, output=str(target), chunk_rows=500)  # replaced
    assert pq.ParquetFile(target).metadata.num_row_groups == 1
    assert set(pd.read_parquet(target)["batch_id"]) == {again.job.id}


def test_a_folder_gets_part_files_and_success_last(
    local: Project, trained: Trained, source: tuple[str, pd.DataFrame], tmp_path: Path
) -> None:
    path, frame = source
    target = tmp_path / "scores"
    first = local.predict("churn", path, output=f"{target}/", chunk_rows=200)
    assert first.job.output == f"parquet:{target}/"
    names = sorted(p.name for p in target.iterdir())
    assert names == ["_SUCCESS", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    marker = json.loads((target / "_SUCCESS").read_text())
    assert (marker["batch_id"], marker["parts"], marker["rows"]) == (first.job.id, 3, 500)
    written = pd.read_parquet(target)  # readers skip _SUCCESS
    pd.testing.assert_frame_equal(written, zone(local, first.job.dataset))
    assert_scored(written, trained[0], frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "proj", "scores"]

    # an existing folder needs no slash; a shorter export leaves none of the longer one's parts
    second = local.predict("churn", path, output=str(target), chunk_rows=250)
    assert sorted(p.name for p in target.iterdir()) == [
        "_SUCCESS",
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert set(pd.read_parquet(target)["batch_id"]) == {second.job.id}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "proj", "scores"]

    empty = tmp_path / "empty"
    empty.mkdir()
    local.predict("churn", path, output=str(empty), chunk_rows=500)
    assert sorted(p.name for p in empty.iterdir()) == ["_SUCCESS", "part-00000.parquet"]


def test_a_folder_holding_other_files_is_refused_before_scoring(
    local: Project, source: tuple[str, pd.DataFrame], tmp_path: Path
) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidArgumentError, match=r"holds files shipyard did not write \(notes"):
        local.predict("churn", source[0], output=str(target))
    assert local.predictions.jobs() == []
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("scores.xlsx", "the suffix '.xlsx' is not a format shipyard writes; write predictions/"),
        ("nope://bucket/x.parquet", r"Protocol not known: nope; use a path on this machine"),
    ],
)
def test_unknown_outputs_say_what_to_write(
    local: Project, source: tuple[str, pd.DataFrame], name: str, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        local.predict("churn", source[0], output=name)
    assert local.predictions.jobs() == []


def test_a_protocol_without_its_library_says_what_to_install() -> None:
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed here")
    from shipyard.batch.outputs import check_output

    with pytest.raises(MissingDependencyError, match=r"writing to gs:// needs a library"):
        check_output(parse_output("gs://bucket/scores.parquet", None, "churn"))


def test_fsspec_urls(
    local: Project, source: tuple[str, pd.DataFrame], memory: str, tmp_path: Path
) -> None:
    path, _ = source
    fs = fsspec.filesystem("memory")
    result = local.predict("churn", path, output=f"{memory}/scores.csv", chunk_rows=200)
    assert result.job.output == f"csv:{memory}/scores.csv"
    with fs.open(f"{memory}/scores.csv") as handle:
        written = pd.read_csv(handle)
    assert written["prediction"].tolist() == zone(local, result.job.dataset)["prediction"].tolist()

    folder = local.predict("churn", path, output=f"{memory}/scores/", chunk_rows=200)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{memory}/scores", detail=False))
    assert names == ["_SUCCESS", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    parts = [pd.read_parquet(fs.open(f"{memory}/scores/{n}")) for n in names[1:]]
    pd.testing.assert_frame_equal(
        pd.concat(parts, ignore_index=True), zone(local, folder.job.dataset)
    )
    shorter = local.predict("churn", path, output=f"{memory}/scores/", chunk_rows=500)
    fs.invalidate_cache()
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{memory}/scores", detail=False))
    assert names == ["_SUCCESS", "part-00000.parquet"]
    assert json.loads(fs.cat(f"{memory}/scores/_SUCCESS"))["batch_id"] == shorter.job.id

    url = f"file://{tmp_path}/by-url/scores.parquet"
    local.predict("churn", path, output=url)
    assert len(pd.read_parquet(tmp_path / "by-url" / "scores.parquet")) == 500


def test_a_failed_upload_leaves_no_part_files(memory: str, tmp_path: Path) -> None:
    """Where nothing can be renamed, a folder that fails half-way loses its parts (never a mix
    of two exports) and has no _SUCCESS."""
    fs = fsspec.filesystem("memory")
    spec = parse_output(f"{memory}/scores/", None, "churn")
    for name in ("part-00000.parquet", "part-00001.parquet", "_SUCCESS"):  # an earlier export
        fs.pipe_file(f"{memory}/scores/{name}", b"old")
    parts = []
    for number in range(3):
        part = tmp_path / f"part-{number:06d}.parquet"
        pd.DataFrame({"x": [number]}).to_parquet(part)
        parts.append(part)
    parts[2].unlink()  # the third upload fails
    with pytest.raises(DataSourceError, match=r"writing --output parquet:memory://.* failed"):
        _replace_parts(spec, fs, f"{memory.split('://', 1)[1]}/scores", parts, b"{}")
    fs.invalidate_cache()
    assert fs.ls(f"{memory}/scores", detail=False) == []


def test_s3(
    local: Project, trained: Trained, source: tuple[str, pd.DataFrame], s3_endpoint: str
) -> None:
    """A real S3 wire peer: moto's server on loopback."""
    import s3fs

    path, frame = source
    fs = s3fs.S3FileSystem()
    result = local.predict("churn", path, output="s3://scores/runs/today.parquet", chunk_rows=200)
    assert result.job.output == "parquet:s3://scores/runs/today.parquet"
    with fs.open("scores/runs/today.parquet") as handle:
        written = pd.read_parquet(handle)
    pd.testing.assert_frame_equal(written, zone(local, result.job.dataset))
    assert_scored(written, trained[0], frame)

    local.predict("churn", path, output="s3://scores/daily/", chunk_rows=200)
    local.predict("churn", path, output="s3://scores/daily/", chunk_rows=250)
    fs.invalidate_cache()
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("scores/daily", detail=False))
    assert names == ["_SUCCESS", "part-00000.parquet", "part-00001.parquet"]
    assert len(pd.read_parquet("scores/daily", filesystem=fs)) == 500  # skips _SUCCESS

    with pytest.raises(DataSourceError, match=r"the bucket 'nobucket' does not exist or these"):
        local.predict("churn", path, output="s3://nobucket/x.parquet")
    jobs = local.predictions.jobs()
    assert len(jobs) == 3  # refused before a job was recorded


def test_an_unreachable_s3_endpoint_is_refused_before_scoring(
    local: Project, source: tuple[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    s3fs = pytest.importorskip("s3fs", reason="needs s3fs (the s3 extra)")
    for name, value in {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",  # nothing listens there
        "AWS_ACCESS_KEY_ID": "shipyard-tests",
        "AWS_SECRET_ACCESS_KEY": "shipyard-tests",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(
            DataSourceError, match=r"cannot reach --output parquet:s3://b/x.parquet"
        ):
            local.predict("churn", source[0], output="s3://b/x.parquet")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert local.predictions.jobs() == []
