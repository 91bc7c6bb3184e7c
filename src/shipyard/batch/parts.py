"""A job's scored chunks on disk: one Parquet part per chunk, written whole or not at all.

Chunk ``i`` is ``part-{i:06d}.parquet`` in the job's work folder. A part is written to a
temporary name in the same folder and renamed into place, so a process killed at any instant
leaves every chunk either fully scored or not at all; a resumed job scores exactly the
chunks that have no part. Writing goes through fsspec, so a work folder on shared storage
serves Dask workers on other machines.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

#: Columns that hold one value per chunk (Parquet dictionary-encodes only these).
CONSTANT_COLUMNS = ["model", "model_version", "scored_at", "batch_id"]
_PART = re.compile(r"^part-(\d{6,})\.parquet$")


def part_name(index: int) -> str:
    """The file name of chunk ``index``'s part."""
    return f"part-{index:06d}.parquet"


def write_part(work_dir: str, index: int, table: pa.Table) -> int:
    """Write chunk ``index`` atomically below ``work_dir``; the number of rows written."""
    fs, root = fsspec.core.url_to_fs(work_dir)
    if isinstance(fs, LocalFileSystem):  # Arrow writes the file itself, without Python calls
        folder = Path(root)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".tmp-{uuid.uuid4().hex}.parquet"
        try:
            _write(table, str(partial))
            os.replace(partial, folder / part_name(index))
        finally:
            partial.unlink(missing_ok=True)
        return int(table.num_rows)
    fs.makedirs(root, exist_ok=True)
    tmp = f"{root}/.tmp-{uuid.uuid4().hex}.parquet"
    try:
        with fs.open(tmp, "wb") as handle:
            _write(table, handle)
        fs.mv(tmp, f"{root}/{part_name(index)}")
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)
    return int(table.num_rows)


def _write(table: pa.Table, where: Any) -> None:
    # the constant columns of a chunk compress to almost nothing as dictionaries
    pq.write_table(table, where, compression="zstd", use_dictionary=CONSTANT_COLUMNS)


def done_parts(work_dir: str) -> dict[int, int]:
    """Chunk index → rows, for every part already written below ``work_dir``."""
    fs, root = fsspec.core.url_to_fs(work_dir)
    if not fs.exists(root):
        return {}
    found: dict[int, int] = {}
    for path in fs.ls(root, detail=False):
        match = _PART.match(str(path).rsplit("/", 1)[-1])
        if match:
            with fs.open(path, "rb") as handle:
                found[int(match.group(1))] = pq.ParquetFile(handle).metadata.num_rows
    return found


def clear_temporary(work_dir: str) -> None:
    """Remove half-written parts a killed process left (they were never renamed)."""
    fs, root = fsspec.core.url_to_fs(work_dir)
    if fs.exists(root):
        for path in fs.ls(root, detail=False):
            if str(path).rsplit("/", 1)[-1].startswith(".tmp-"):
                fs.rm(path)
