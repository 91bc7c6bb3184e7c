"""Multi-part dataset versions (what batch jobs write), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.helpers import make_settings

from shipyard import Project
from shipyard.core.exceptions import ArtifactIntegrityError, InvalidArgumentError


@pytest.fixture
def project(tmp_path: Path, database_url: str) -> Iterator[Project]:
    with Project(settings=make_settings(tmp_path / "p", database_url)) as opened:
        yield opened


def write_parts(folder: Path, sizes: dict[str, int]) -> pd.DataFrame:
    """Parts named as given (rows numbered across them in name order); all their rows."""
    folder.mkdir(parents=True, exist_ok=True)
    start, frames = 0, []
    for name in sorted(sizes):
        frame = pd.DataFrame({"id": range(start, start + sizes[name])})
        frame["score"] = frame["id"] / 10
        frame["label"] = [f"r{i}" for i in frame["id"]]
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / name)
        frames.append(frame)
        start += sizes[name]
    return pd.concat(frames, ignore_index=True)


SIZES = {"part-000002.parquet": 4, "part-000000.parquet": 3, "part-000001.parquet": 5}


def test_stage_commit_and_read_in_part_order(project: Project, tmp_path: Path) -> None:
    whole = write_parts(tmp_path / "parts", SIZES)
    (tmp_path / "parts" / "notes.txt").write_text("not a part")
    (tmp_path / "parts" / ".tmp-0a1b.parquet").write_bytes(b"half a part a writer left")
    staged = project.datasets.stage_parts("predictions/scores", tmp_path / "parts")
    assert (staged.layout, staged.row_count) == ("parts", 12)
    assert staged.columns == [
        {"name": "id", "dtype": "int64"},
        {"name": "score", "dtype": "float64"},
        {"name": "label", "dtype": str(whole["label"].dtype)},
    ]
    assert project.datasets.list() == []  # staged, not yet a version
    [info] = project.datasets.commit([staged], source="batch:job1")
    assert (info.ref, info.layout, info.row_count, info.source) == (
        "predictions/scores:1",
        "parts",
        12,
        "batch:job1",
    )
    assert info.to_dict()["layout"] == "parts"
    assert project.datasets.get("predictions/scores").layout == "parts"
    digests = project.datasets.parts(info)
    assert len(digests) == 3  # only the parts: no notes, no temporaries
    sizes = []
    for digest in digests:
        with project.datasets.local_part(digest) as path:
            sizes.append(pq.ParquetFile(path).metadata.num_rows)
        assert not path.exists()  # removed once read
    assert sizes == [3, 5, 4]  # part-000000, -000001, -000002
    pd.testing.assert_frame_equal(project.datasets.read("predictions/scores"), whole)
    assert list(project.datasets.read("predictions/scores", columns=["id"]).columns) == ["id"]


def test_iter_batches_head_and_schema_across_parts(project: Project, tmp_path: Path) -> None:
    whole = write_parts(tmp_path / "parts", SIZES)
    [info] = project.datasets.commit(
        [project.datasets.stage_parts("predictions/scores", tmp_path / "parts")]
    )
    batches = list(project.datasets.iter_batches(info, batch_size=2))
    assert [b.num_rows for b in batches] == [2, 1, 2, 2, 1, 2, 2]  # never across two parts
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(12))
    only = list(project.datasets.iter_batches("predictions/scores", columns=["label"]))
    assert {tuple(b.schema.names) for b in only} == {("label",)}
    head = project.datasets.head("predictions/scores", 9)  # three parts' worth
    pd.testing.assert_frame_equal(head, whole.head(9))
    assert len(project.datasets.head("predictions/scores", 100)) == 12
    empty = project.datasets.head("predictions/scores", 0)
    assert (len(empty), list(empty.columns)) == (0, ["id", "score", "label"])
    schema = project.datasets.schema("predictions/scores:1")
    assert schema.names == ["id", "score", "label"]
    assert schema.field("id").type == pa.int64()


def test_fingerprints_reuse_and_file_layout_alongside(project: Project, tmp_path: Path) -> None:
    write_parts(tmp_path / "a", SIZES)
    write_parts(tmp_path / "b", SIZES)  # the same bytes in another folder
    write_parts(tmp_path / "c", {"part-000000.parquet": 3, "part-000001.parquet": 9})
    first = project.datasets.stage_parts("predictions/scores", tmp_path / "a")
    same = project.datasets.stage_parts("predictions/scores", tmp_path / "b")
    other = project.datasets.stage_parts("predictions/scores", tmp_path / "c")
    assert first.fingerprint == same.fingerprint != other.fingerprint
    [v1] = project.datasets.commit([first])
    [again] = project.datasets.commit([same])
    assert (again.version, again.reused) == (1, True)  # a resumed job re-commits its parts
    [v2] = project.datasets.commit([other])
    assert v2.version == 2
    assert v2.row_count == 12
    assert [v.version for v in project.datasets.versions("predictions/scores")] == [2, 1]
    plain = project.datasets.write("raw/plain", pd.DataFrame({"x": [1, 2]}))
    assert plain.layout == "file"
    assert plain.to_dict()["layout"] == "file"
    assert project.datasets.parts(plain) == [plain.artifact_digest]
    assert project.datasets.head("raw/plain", 1)["x"].tolist() == [1]
    assert v1.layout == "parts"


def test_delete_and_refusals(project: Project, tmp_path: Path) -> None:
    write_parts(tmp_path / "parts", SIZES)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="holds no Parquet parts to store as pred"):
        project.datasets.stage_parts("predictions/scores", tmp_path / "empty")
    with pytest.raises(InvalidArgumentError, match="versions are numbered by shipyard"):
        project.datasets.stage_parts("predictions/scores:4", tmp_path / "parts")
    for _ in range(2):
        write_parts(tmp_path / "parts", {**SIZES, "part-000003.parquet": _ + 1})
        project.datasets.commit(
            [project.datasets.stage_parts("predictions/scores", tmp_path / "parts")]
        )
    with pytest.raises(InvalidArgumentError, match="name the version to delete"):
        project.datasets.delete("predictions/scores")
    gone = project.datasets.delete("predictions/scores:1")
    assert gone.layout == "parts"
    assert not project.datasets.exists("predictions/scores:1")
    assert project.datasets.get("predictions/scores").version == 2


def test_a_tampered_part_is_refused(project: Project, tmp_path: Path) -> None:
    write_parts(tmp_path / "parts", SIZES)
    [info] = project.datasets.commit(
        [project.datasets.stage_parts("predictions/scores", tmp_path / "parts")]
    )
    digest = project.datasets.parts(info)[1]
    blob = Path(project.settings.artifacts_url) / "sha256" / digest[:2] / digest
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    with pytest.raises(ArtifactIntegrityError, match=digest):
        project.datasets.read("predictions/scores")
