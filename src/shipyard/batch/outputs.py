"""Where a finished job's predictions go besides the predictions zone: a CSV file or a SQL table.

Every job records its parts as a dataset version in the ``predictions`` zone (the predictions
store). ``--output`` may add one export, written only once every chunk is scored:

- ``FILE.csv``: the parts concatenated, written to a temporary name and renamed;
- a database URL (``postgresql+psycopg://…``, ``sqlite:///…``) with ``--table``: the rows
  appended to the table (created if missing), in one transaction that first deletes any rows
  of the same job, so a job re-run after a crash never leaves its rows twice.

Both stream the parts one at a time.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from shipyard.batch.inputs import is_sql_url
from shipyard.core.exceptions import DataSourceError, InvalidArgumentError
from shipyard.core.refs import DatasetRef, is_dataset_ref

_TABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,62}"


@dataclass(frozen=True)
class OutputSpec:
    """What ``--output`` (and ``--table``) asked for."""

    dataset: str  #: ``predictions/NAME``
    csv: Path | None = None
    sql_url: str | None = None
    table: str | None = None

    def describe(self) -> str:
        """A short, secret-free description."""
        if self.csv is not None:
            return f"csv:{self.csv}"
        if self.sql_url is not None:
            shown = sa.make_url(self.sql_url).render_as_string(hide_password=True)
            return f"sql:{shown}#{self.table}"
        return self.dataset


def parse_output(uri: str | None, table: str | None, model: str) -> OutputSpec:
    """Read ``--output`` (default ``predictions/<model>``) and ``--table``."""
    dataset = f"predictions/{model}"
    if uri is not None and not is_sql_url(uri) and Path(uri).suffix.lower() == ".csv":
        # before the ZONE/NAME test: predictions/scores.csv is a file, not a dataset's name
        if table:
            raise InvalidArgumentError("--table goes with a database URL as --output")
        return OutputSpec(dataset, csv=Path(uri).resolve())
    if uri is None or is_dataset_ref(uri):
        if uri is not None:
            parsed = DatasetRef.parse(uri)
            if parsed.zone != "predictions" or parsed.version is not None:
                raise InvalidArgumentError(
                    f"--output {uri}: predictions go to predictions/NAME (no version: "
                    "shipyard numbers them)"
                )
            dataset = parsed.key
        if table:
            raise InvalidArgumentError("--table goes with a database URL as --output")
        return OutputSpec(dataset)
    if is_sql_url(uri):
        if not table or not re.fullmatch(_TABLE_NAME, table):
            raise InvalidArgumentError(
                f"a database output needs --table NAME (letters, digits and '_', starting with "
                f"a letter) but got {table!r}"
            )
        return OutputSpec(dataset, sql_url=os.path.expandvars(uri), table=table)
    if table:
        raise InvalidArgumentError("--table goes with a database URL as --output")
    path = Path(uri)
    if path.suffix.lower() != ".csv":
        raise InvalidArgumentError(
            f"--output {uri}: write predictions/NAME (a dataset in the predictions zone, the "
            "default), FILE.csv, or a database URL with --table"
        )
    return OutputSpec(dataset, csv=path.resolve())


def check_output(spec: OutputSpec) -> None:
    """Refuse, before anything is scored, a database output that :func:`write_sql` would refuse.

    The database must be reachable, and an existing ``--table`` must be a predictions table
    (one with a ``batch_id`` column).
    """
    if spec.sql_url is None or spec.table is None:
        return
    engine = _engine(spec.sql_url)
    try:
        with engine.connect() as connection:
            _check_table(connection, spec.table)
    except sa.exc.SQLAlchemyError as exc:
        raise DataSourceError(f"cannot reach the output database {spec.describe()}: {exc}") from exc
    finally:
        engine.dispose()


def _engine(url: str) -> sa.Engine:
    try:
        return sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise DataSourceError(f"cannot open the output database: {exc}") from exc


def _check_table(connection: sa.Connection, table: str) -> sa.Table | None:
    """The existing predictions table ``table`` (None when there is none yet)."""
    if not sa.inspect(connection).has_table(table):
        return None
    target = sa.Table(table, sa.MetaData(), autoload_with=connection)
    if "batch_id" not in target.c:
        raise InvalidArgumentError(
            f"table {table} exists without a batch_id column: it is not a shipyard "
            "predictions table; choose another --table"
        )
    return target


def _parts(work_dir: Path) -> Iterator[pa.Table]:
    for path in sorted(work_dir.glob("part-*.parquet")):
        yield pq.read_table(path)


def write_csv(work_dir: Path, target: Path) -> int:
    """Concatenate the parts into ``target`` (atomically); the number of rows."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    rows = 0
    writer: pacsv.CSVWriter | None = None
    try:
        for table in _parts(work_dir):
            if writer is None:
                writer = pacsv.CSVWriter(str(tmp), table.schema)
            writer.write_table(table)
            rows += table.num_rows
        if writer is not None:
            writer.close()
            writer = None
        os.replace(tmp, target)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return rows


def write_sql(work_dir: Path, url: str, table: str, batch_id: str) -> int:
    """Append the parts to ``table`` in one transaction (replacing rows of ``batch_id``)."""
    engine = _engine(url)
    rows = 0
    try:
        with engine.begin() as connection:
            target = _check_table(connection, table)
            if target is not None:
                connection.execute(sa.delete(target).where(target.c.batch_id == batch_id))
            for part in _parts(work_dir):
                frame = part.to_pandas()
                frame.to_sql(table, connection, if_exists="append", index=False, chunksize=10_000)
                rows += len(frame)
    except sa.exc.SQLAlchemyError as exc:
        raise DataSourceError(f"writing predictions to table {table} failed: {exc}") from exc
    finally:
        engine.dispose()
    return rows
