"""What a batch job reads: CSV, Parquet (a file, a folder, a dataset in a zone) or a SQL query.

Every input is cut into *chunks* of ``chunk_rows`` consecutive rows, numbered from 0 in input
order; chunk ``i`` holds rows ``i * chunk_rows`` up to ``(i + 1) * chunk_rows``. The same
input and chunk size always give the same chunks, which is what makes a job resumable:
a chunk already scored is skipped, never cut differently. Parquet inputs can read any
chunk on its own (:meth:`BatchInput.read_chunk`, used by the Dask engine's workers); CSV and
SQL inputs are read front to back.

Only one chunk (plus the row group it falls in, for Parquet) is in memory at a time.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from shipyard.core.exceptions import DataSourceError, InvalidArgumentError
from shipyard.core.refs import DatasetRef, is_dataset_ref
from shipyard.datasets import Datasets

#: (chunk index, first row number, rows)
Chunk = tuple[int, int, pa.Table]
_SQL_PREFIXES = ("postgresql", "sqlite", "mysql", "mariadb", "mssql", "oracle")


def is_sql_url(text: str) -> bool:
    """True when ``text`` looks like a SQLAlchemy database URL."""
    scheme = text.split("://", 1)[0] if "://" in text else ""
    return scheme.split("+", 1)[0] in _SQL_PREFIXES


def _rebatch(tables: Iterator[pa.Table], chunk_rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``chunk_rows`` rows (the last one may be shorter)."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        while table.num_rows:
            take = min(chunk_rows - held, table.num_rows)
            pending.append(table.slice(0, take))
            held += take
            table = table.slice(take)
            if held == chunk_rows:
                yield _concat(pending)
                pending, held = [], 0
    if held:
        yield _concat(pending)


def _concat(tables: list[pa.Table]) -> pa.Table:
    """One table of ``tables``, whose types may differ (a column of nulls, int then float)."""
    if len(tables) == 1:
        return tables[0].combine_chunks()
    try:
        return pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataSourceError(
            f"the input's columns change type from one part to the next: {exc}"
        ) from exc


class BatchInput(ABC):
    """An input cut into numbered chunks."""

    #: True when any chunk can be read on its own (:meth:`read_chunk`)
    random_access = False

    @abstractmethod
    def describe(self) -> str:
        """A short, secret-free description (stored on the job and shown to users)."""

    def total_rows(self) -> int | None:
        """The number of rows, when known without reading them."""
        return None

    @abstractmethod
    def tables(self) -> Iterator[pa.Table]:
        """The input's rows, front to back, in tables of any size."""

    def chunks(self, chunk_rows: int, skip: frozenset[int] = frozenset()) -> Iterator[Chunk]:
        """Every chunk not in ``skip``, in order."""
        for index, table in enumerate(_rebatch(self.tables(), chunk_rows)):
            if index not in skip:
                yield index, index * chunk_rows, table

    def read_chunk(self, index: int, chunk_rows: int) -> pa.Table:
        """Chunk ``index`` alone (random-access inputs only)."""
        raise InvalidArgumentError(
            f"{self.describe()} can only be read front to back, not chunk {index} of "
            f"{chunk_rows} rows on its own"
        )


@dataclass
class ParquetInput(BatchInput):
    """Parquet files (one file, or every ``*.parquet`` below a folder in name order)."""

    paths: list[Path]
    label: str
    #: the columns read (None: all); every file has them (:meth:`open` checks)
    columns: list[str] | None = None
    random_access = True
    _groups: list[tuple[int, int, int, int]] = field(default_factory=list)  # file, group, start, n
    _cache: dict[tuple[int, int], pa.Table] = field(default_factory=dict)
    _files: dict[int, pq.ParquetFile] = field(default_factory=dict)

    @classmethod
    def open(
        cls, path: Path, label: str | None = None, columns: list[str] | None = None
    ) -> ParquetInput:
        """The Parquet file ``path``, or the files below the folder ``path``.

        ``columns``: read only these (a job reads its features and keys), when every file has
        them; otherwise every column is read, so the job names the one that is missing.
        """
        if path.is_dir():
            paths = sorted(p for p in path.rglob("*.parquet") if p.is_file())
            if not paths:
                raise DataSourceError(f"{path} is a folder without *.parquet files")
        elif path.is_file():
            paths = [path]
        else:
            raise DataSourceError(f"input {path} does not exist; give a CSV or Parquet file")
        found = cls(paths, label or f"parquet:{path}", list(columns) if columns else None)
        start = 0
        for number, file in enumerate(paths):
            try:
                metadata = pq.ParquetFile(file).metadata
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataSourceError(f"{file} is not a readable Parquet file: {exc}") from exc
            if found.columns and not set(found.columns) <= set(metadata.schema.names):
                found.columns = None
            for group in range(metadata.num_row_groups):
                rows = metadata.row_group(group).num_rows
                found._groups.append((number, group, start, rows))
                start += rows
        return found

    def describe(self) -> str:
        return self.label

    def total_rows(self) -> int:
        return sum(rows for *_, rows in self._groups)

    def tables(self) -> Iterator[pa.Table]:
        for number in range(len(self.paths)):
            for group in range(self._file(number).metadata.num_row_groups):
                yield self._file(number).read_row_group(group, columns=self.columns)

    def chunks(self, chunk_rows: int, skip: frozenset[int] = frozenset()) -> Iterator[Chunk]:
        total = self.total_rows()
        for index in range(-(-total // chunk_rows)):
            if index not in skip:
                yield index, index * chunk_rows, self.read_chunk(index, chunk_rows)

    def read_chunk(self, index: int, chunk_rows: int) -> pa.Table:
        first, stop = index * chunk_rows, (index + 1) * chunk_rows
        pieces = []
        for number, group, start, rows in self._groups:
            if start + rows <= first or start >= stop:
                continue
            table = self._row_group(number, group)
            lo = max(first - start, 0)
            pieces.append(table.slice(lo, min(stop, start + rows) - start - lo))
        if not pieces:
            raise InvalidArgumentError(f"chunk {index} is past the end of {self.label}")
        return _concat(pieces) if len(pieces) > 1 else pieces[0]

    def _row_group(self, number: int, group: int) -> pa.Table:
        key = (number, group)
        if key not in self._cache:  # row groups larger than a chunk are read once, not per chunk
            self._cache.clear()
            self._cache[key] = self._file(number).read_row_group(group, columns=self.columns)
        return self._cache[key]

    def _file(self, number: int) -> pq.ParquetFile:
        """File ``number``, opened once (its footer parsed once) while it is being read."""
        if number not in self._files:
            self._files.clear()
            self._files[number] = pq.ParquetFile(self.paths[number])
        return self._files[number]

    def __getstate__(self) -> dict[str, Any]:  # sent to Dask workers without rows or handles
        state = self.__dict__.copy()
        state["_cache"] = {}
        state["_files"] = {}
        return state


#: Bytes pyarrow parses per CSV block (a job's chunks are cut from these).
CSV_BLOCK_BYTES = 16 << 20


@dataclass
class CsvInput(BatchInput):
    """A CSV file with a header row, parsed by pyarrow in blocks.

    An empty field is a missing value in every column (as pandas reads it). Column types are
    inferred from the first block, except those given in ``column_types`` (the job passes the
    model's floating-point features, so a column whose first rows look like integers does
    not fail on a fraction further down).
    """

    path: Path
    block_bytes: int = CSV_BLOCK_BYTES
    column_types: dict[str, pa.DataType] = field(default_factory=dict)

    def describe(self) -> str:
        return f"csv:{self.path}"

    def tables(self) -> Iterator[pa.Table]:
        convert = pacsv.ConvertOptions(
            strings_can_be_null=True, column_types=self.column_types or None
        )
        try:
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(block_size=self.block_bytes),
                convert_options=convert,
            )
            for batch in reader:
                yield pa.Table.from_batches([batch])
        except pa.ArrowInvalid as exc:
            raise DataSourceError(f"{self.path} is not a readable CSV file: {exc}") from exc


@dataclass
class SqlInput(BatchInput):
    """The rows of a SQL query, fetched with a server-side cursor where the driver has one.

    A resumable job needs the query to return rows in the same order every time: give it an
    ``ORDER BY``.
    """

    url: str
    query: str
    fetch_rows: int = 50_000

    def describe(self) -> str:
        try:
            shown = sa.make_url(self.url).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            shown = "?"
        return f"sql:{shown}:{self.query}"

    def tables(self) -> Iterator[pa.Table]:
        try:
            engine = sa.create_engine(self.url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise DataSourceError(f"cannot open the database {self.describe()}: {exc}") from exc
        try:
            with engine.connect() as connection:
                result = connection.execution_options(stream_results=True).execute(
                    sa.text(self.query)
                )
                names = list(result.keys())
                schema: pa.Schema | None = None
                for rows in result.partitions(self.fetch_rows):
                    columns = list(zip(*rows, strict=True))
                    table = pa.table(dict(zip(names, map(_plain_values, columns), strict=True)))
                    # Arrow infers types from each fetch's values: a column NULL throughout one
                    # fetch, or integral in one and fractional in the next, keeps one type.
                    schema = _widen(schema, table.schema)
                    yield table.cast(schema)
        except sa.exc.SQLAlchemyError as exc:
            raise DataSourceError(f"the query failed on {self.describe()}: {exc}") from exc
        finally:
            engine.dispose()


def _plain_values(column: tuple[Any, ...]) -> list[Any]:
    """A fetched column, with UUIDs as their text (Arrow would keep 16 opaque bytes)."""
    first = next((value for value in column if value is not None), None)
    if isinstance(first, uuid.UUID):
        return [None if value is None else str(value) for value in column]
    return list(column)


def _widen(known: pa.Schema | None, seen: pa.Schema) -> pa.Schema:
    """The schema holding the rows fetched so far and ``seen`` (types only ever widen)."""
    if known is None:
        return seen
    try:
        return pa.unify_schemas([known, seen], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataSourceError(
            f"the query's columns change type from one fetch to the next: {exc}; cast them "
            "in the query (CAST(column AS ...))"
        ) from exc


@dataclass(frozen=True)
class InputSpec:
    """A batch ``--input`` parsed once: a database query, a dataset in a zone, or a path.

    :meth:`parse` refuses a database without ``--query`` and ``--query`` without a database;
    :meth:`identity` says what identifies the content (for a job's spec) without reading
    rows; :meth:`open` gives the rows.
    """

    uri: str
    query: str | None
    kind: Literal["sql", "dataset", "path"]

    @classmethod
    def parse(cls, uri: str, query: str | None) -> InputSpec:
        """Classify ``uri``; refuse a query that does not fit it."""
        if is_sql_url(uri):
            if not query:
                raise InvalidArgumentError(
                    f"{uri.split('://', 1)[0]}:// is a database: give the rows to score with "
                    "--query 'SELECT ... ORDER BY ...'"
                )
            return cls(uri, query, "sql")
        if query:
            raise InvalidArgumentError("--query goes with a database URL as --input, not a file")
        return cls(uri, None, "dataset" if is_dataset_ref(uri) else "path")

    def _path(self) -> Path:
        path = Path(self.uri).resolve()  # relative to the current folder, like any argument
        if not path.exists():
            raise DataSourceError(
                f"input {self.uri} does not exist: give a CSV or Parquet file or folder, "
                f"ZONE/NAME (e.g. {DatasetRef('processed', 'customers')}), or a database URL "
                "with --query"
            )
        return path

    def identity(self, datasets: Datasets) -> str:
        """What identifies the input's content for a job's spec, without reading its rows."""
        if self.kind == "sql":
            return hashlib.sha256(f"{self.uri}\x1f{self.query}".encode()).hexdigest()
        if self.kind == "dataset":
            return datasets.get(self.uri).fingerprint
        path = self._path()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for file in files:
            stat = file.stat()
            digest.update(f"{file.resolve()}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}\x1e".encode())
        return digest.hexdigest()

    def open(
        self,
        *,
        datasets: Datasets,
        scratch: Path,
        column_types: dict[str, pa.DataType] | None = None,
        columns: list[str] | None = None,
    ) -> BatchInput:
        """The rows. A dataset version in a zone is first copied to ``scratch`` (verified on
        the way), part by part, so it can be read like any Parquet folder.

        ``columns``: the ones the job needs; Parquet inputs read only these (when they have
        them all), other inputs every column.
        """
        if self.kind == "sql":
            return SqlInput(os.path.expandvars(self.uri), str(self.query))
        if self.kind == "dataset":
            info = datasets.get(self.uri)
            folder = scratch / "input"
            folder.mkdir(parents=True, exist_ok=True)
            for number, digest in enumerate(datasets.parts(info)):
                target = folder / f"part-{number:06d}.parquet"
                if not target.exists():  # a resumed job keeps its verified copy
                    datasets.artifacts.download(digest, target)
            return ParquetInput.open(folder, label=f"dataset:{info.ref}", columns=columns)
        path = self._path()
        if path.is_file() and path.suffix.lower() in (".csv", ".txt"):
            return CsvInput(path, CSV_BLOCK_BYTES, dict(column_types or {}))
        return ParquetInput.open(path, columns=columns)
