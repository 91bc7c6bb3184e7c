"""Writing a finished job's export (``--output``): a Parquet or CSV file, a folder of Parquet
parts, or a SQL table, from the job's parts, one part in memory at a time.

What is written where, and why a reader never sees an export half-written, is described in
:mod:`shipyard.batch.outputs`; this module does it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from shipyard.batch.outputs import (
    PART,
    SUCCESS,
    OutputSpec,
    filesystem,
    folder_names,
    sql_engine,
    sql_table,
)
from shipyard.batch.parts import CONSTANT_COLUMNS
from shipyard.core.clock import utcnow
from shipyard.core.exceptions import DataSourceError, InvalidArgumentError


def export(spec: OutputSpec, parts_dir: Path, batch_id: str) -> int:
    """Write the job's parts (``part-*.parquet`` in ``parts_dir``, in order) to the export of
    ``spec``; the number of rows written (0 when ``spec`` asks only for the zone)."""
    parts = sorted(parts_dir.glob("part-*.parquet"))
    if spec.kind == "zone" or spec.target is None:
        return 0
    if spec.kind == "sql":
        assert spec.table is not None  # noqa: S101 - narrows the type; the caller guarantees it
        return write_sql(parts_dir, spec.target, spec.table, batch_id)
    if spec.kind == "folder":
        return _write_folder(spec, parts, batch_id)
    return _write_file(spec, parts, parts_dir)


def part_name(index: int) -> str:
    """The name of a folder export's part ``index``."""
    return f"part-{index:05d}.parquet"


def _rows(parts: list[Path]) -> int:
    return sum(pq.ParquetFile(part).metadata.num_rows for part in parts)


def _tables(parts: list[Path]) -> Iterator[pa.Table]:
    """The parts, read one at a time, cast to one schema (a key column of nulls in one part
    and of text in the next is text throughout)."""
    schemas = [pq.read_schema(part) for part in parts]
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else None
    for part, own in zip(parts, schemas, strict=True):
        table = pq.read_table(part)
        yield table if schema is None or own.equals(schema) else table.cast(schema)


def _write_local(kind: str, parts: list[Path], target: Path) -> int:
    """Write the parts as one Parquet or CSV file at ``target``; the number of rows."""
    rows = 0
    writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
    try:
        for table in _tables(parts):
            if writer is None:
                writer = (
                    pq.ParquetWriter(
                        target, table.schema, compression="zstd", use_dictionary=CONSTANT_COLUMNS
                    )
                    if kind == "parquet"
                    else pacsv.CSVWriter(str(target), table.schema)
                )
            writer.write_table(table)  # one row group per chunk
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def _write_file(spec: OutputSpec, parts: list[Path], parts_dir: Path) -> int:
    """One Parquet or CSV file: renamed into place here, one upload to an object store."""
    fs, path = filesystem(spec)
    if spec.local:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            rows = _write_local(spec.kind, parts, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return rows
    staged = parts_dir.parent / f"export-{uuid.uuid4().hex}.{spec.kind}"
    try:
        rows = _write_local(spec.kind, parts, staged)
        _upload(spec, fs, staged, path)
    finally:
        staged.unlink(missing_ok=True)
    return rows


def _upload(spec: OutputSpec, fs: Any, local: Path, path: str) -> None:
    try:
        fs.put_file(str(local), path)
    except Exception as exc:
        raise DataSourceError(
            f"writing --output {spec.describe()} failed: {type(exc).__name__}: {exc}; the "
            "predictions are stored in the predictions zone: run the same command with "
            "--resume to write the export again"
        ) from exc


def _marker(batch_id: str, parts: int, rows: int) -> bytes:
    return json.dumps(
        {"batch_id": batch_id, "parts": parts, "rows": rows, "written_at": utcnow().isoformat()}
    ).encode()


def _write_folder(spec: OutputSpec, parts: list[Path], batch_id: str) -> int:
    """Parquet part files and ``_SUCCESS``: a folder renamed into place here, the object
    store's order (old marker out, parts, stale parts out, marker last) elsewhere."""
    fs, path = filesystem(spec)
    rows = _rows(parts)
    marker = _marker(batch_id, len(parts), rows)
    if spec.local:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        staged.mkdir()
        try:
            for index, part in enumerate(parts):
                _link_or_copy(part, staged / part_name(index))
            (staged / SUCCESS).write_bytes(marker)
            if not _swap(spec, staged, target):  # a mount point: replaced file by file
                _replace_parts(spec, fs, path, sorted(staged.glob("part-*.parquet")), marker)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return rows
    _replace_parts(spec, fs, path, parts, marker)
    return rows


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link when both are on one filesystem (parts are never written again), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _swap(spec: OutputSpec, staged: Path, target: Path) -> bool:
    """Rename the finished folder ``staged`` to ``target``; False when ``target`` is a folder
    that cannot be renamed (a mount point)."""
    names = os.listdir(target) if target.is_dir() else []
    foreign = [name for name in names if name != SUCCESS and not PART.match(name)]
    if foreign:  # checked before scoring; someone wrote there since
        raise InvalidArgumentError(
            f"--output {spec.describe()} now holds files shipyard did not write "
            f"({', '.join(sorted(foreign)[:3])}); the predictions are stored in the "
            "predictions zone: choose a new folder and run the same command with --resume"
        )
    if not names:
        os.replace(staged, target)  # a new folder, or over an empty one
        return True
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
    try:
        os.rename(target, old)
    except OSError:
        return False
    try:
        os.rename(staged, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return True


def _replace_parts(spec: OutputSpec, fs: Any, path: str, parts: list[Path], marker: bytes) -> None:
    """Replace a folder's export where nothing can be renamed (see :mod:`.outputs`)."""
    fs.invalidate_cache(path)
    existing = [name for name in folder_names(fs, path) if PART.match(name)]
    written: list[str] = []
    try:
        if fs.exists(f"{path}/{SUCCESS}"):
            fs.rm(f"{path}/{SUCCESS}")
        if spec.local:
            fs.makedirs(path, exist_ok=True)
        for index, part in enumerate(parts):
            fs.put_file(str(part), f"{path}/{part_name(index)}")
            written.append(part_name(index))
        for name in sorted(set(existing) - set(written)):  # a longer earlier export's
            fs.rm(f"{path}/{name}")
        fs.pipe_file(f"{path}/{SUCCESS}", marker)
    except Exception as exc:
        for name in sorted(set(existing) | set(written)):  # no mix of two exports is left
            with suppress(Exception):  # best effort: the error below says what failed
                fs.rm(f"{path}/{name}")
        raise DataSourceError(
            f"writing --output {spec.describe()} failed: {type(exc).__name__}: {exc}; its part "
            "files were removed. The predictions are stored in the predictions zone: run the "
            "same command with --resume to write the export again"
        ) from exc


def write_sql(work_dir: Path, url: str, table: str, batch_id: str) -> int:
    """Append the parts to ``table`` in one transaction (replacing rows of ``batch_id``)."""
    engine = sql_engine(url)
    rows = 0
    try:
        with engine.begin() as connection:
            target = sql_table(connection, table)
            if target is not None:
                connection.execute(sa.delete(target).where(target.c.batch_id == batch_id))
            for part in sorted(work_dir.glob("part-*.parquet")):
                frame = pq.read_table(part).to_pandas()
                frame.to_sql(table, connection, if_exists="append", index=False, chunksize=10_000)
                rows += len(frame)
    except sa.exc.SQLAlchemyError as exc:
        raise DataSourceError(f"writing predictions to table {table} failed: {exc}") from exc
    finally:
        engine.dispose()
    return rows
