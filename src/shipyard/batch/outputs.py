"""Where a finished job's predictions go besides the predictions zone: ``--output``.

Every job records its parts as a dataset version in the ``predictions`` zone (the predictions
store). ``--output`` names that dataset (``predictions/NAME``, default ``predictions/<model>``)
or adds one export, written only once every chunk is scored:

- ``FILE.parquet`` (or ``.pq``): one Parquet file, a row group per chunk;
- ``FILE.csv``: one CSV file with a header row;
- ``FOLDER/`` (a trailing slash, or a folder that exists): Parquet part files
  ``part-00000.parquet``, ``part-00001.parquet``, … (one per chunk, in input order) and a
  ``_SUCCESS`` file written last (Spark's convention; readers such as ``pd.read_parquet`` and
  Spark skip files starting with ``_``);
- any of these as an fsspec URL: ``s3://bucket/scores.parquet`` (the ``s3`` extra), ``gs://…``,
  ``memory://…``, ``file://…``;
- a database URL (``postgresql+psycopg://…``, ``sqlite:///…``) with ``--table``: the rows
  appended to the table (created if missing), in one transaction that first deletes any rows
  of the same job, so a job re-run after a crash never leaves its rows twice.

A file or folder export replaces what the target held (a re-run, a resumed job), and it is
never seen half-written (:mod:`shipyard.batch.exports` writes it):

- on this machine (a path, or ``file://``), it is written under a temporary name beside the
  target and renamed into place; a folder that already holds parts is swapped out by two
  renames, so it is whole before and whole after;
- on an object store (no rename there), nothing is written before every chunk is scored; a file
  is one upload, which the store makes visible only once complete; a folder's old ``_SUCCESS``
  is removed first, the parts are uploaded to their final keys, parts left from a longer
  earlier export are removed, and ``_SUCCESS`` comes last. If an upload fails, the folder's
  part files are removed, so it never holds a mix: **read a folder only once it has its
  ``_SUCCESS``**.

A folder export refuses, before anything is scored, a folder holding anything but an earlier
export's ``part-*.parquet`` and ``_SUCCESS``: shipyard never deletes files it did not write.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from shipyard.batch.inputs import is_sql_url
from shipyard.core.exceptions import DataSourceError, InvalidArgumentError, MissingDependencyError
from shipyard.core.refs import DatasetRef, is_dataset_ref

_TABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
#: File suffix -> the format written.
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
#: The marker a folder export writes last.
SUCCESS = "_SUCCESS"
#: A folder export's part files.
PART = re.compile(r"^part-\d{5,}\.parquet$")
Kind = Literal["zone", "parquet", "csv", "folder", "sql"]
#: Object stores whose paths start with a bucket (checked before anything is scored).
BUCKET_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss")
_CHOICES = (
    "write predictions/NAME (a dataset in the predictions zone, the default), FILE.parquet, "
    "FILE.csv, FOLDER/ (Parquet part files), any of these as an fsspec URL "
    "(s3://bucket/scores.parquet), or a database URL with --table"
)


@dataclass(frozen=True)
class OutputSpec:
    """What ``--output`` (and ``--table``) asked for.

    ``target`` is an absolute local path or an fsspec URL (``parquet``, ``csv``, ``folder``),
    or a database URL (``sql``, with ``table``); ``None`` for the zone alone.
    """

    dataset: str  #: ``predictions/NAME``
    kind: Kind = "zone"
    target: str | None = None
    table: str | None = None

    @property
    def local(self) -> bool:
        """True for a file or folder on this machine (renamed into place)."""
        return self.target is not None and self.kind != "sql" and "://" not in self.target

    def describe(self) -> str:
        """A short, secret-free description."""
        if self.kind == "sql" and self.target is not None:
            shown = sa.make_url(self.target).render_as_string(hide_password=True)
            return f"sql:{shown}#{self.table}"
        if self.target is None:
            return self.dataset
        shown = _without_password(self.target)
        if self.kind == "folder":
            return f"parquet:{shown.rstrip('/')}/"
        return f"{self.kind}:{shown}"


def parse_output(uri: str | None, table: str | None, model: str) -> OutputSpec:
    """Read ``--output`` (default ``predictions/<model>``) and ``--table``."""
    dataset = f"predictions/{model}"
    if uri is not None and is_sql_url(uri):
        if not table or not re.fullmatch(_TABLE_NAME, table):
            raise InvalidArgumentError(
                f"a database output needs --table NAME (letters, digits and '_', starting with "
                f"a letter) but got {table!r}"
            )
        return OutputSpec(dataset, "sql", os.path.expandvars(uri), table)
    if table:
        raise InvalidArgumentError("--table goes with a database URL as --output")
    if uri is None:
        return OutputSpec(dataset)
    if uri.startswith("file://"):
        uri = uri[len("file://") :] or "/"
    folder = uri.endswith(("/", os.sep))
    if "://" in uri:
        kind = "folder" if folder else _file_kind(uri, urlsplit(uri).path)
        return OutputSpec(dataset, kind, uri.rstrip("/") if folder else uri)
    path = Path(uri)
    suffix = path.suffix.lower()
    if folder or path.is_dir():
        return OutputSpec(dataset, "folder", str(path.resolve()))
    if suffix in SUFFIXES:  # before ZONE/NAME: predictions/scores.csv is a file
        return OutputSpec(dataset, _file_kind(uri, uri), str(path.resolve()))
    if is_dataset_ref(uri):
        parsed = DatasetRef.parse(uri)
        if parsed.zone != "predictions" or parsed.version is not None:
            raise InvalidArgumentError(
                f"--output {uri}: predictions go to predictions/NAME (no version: shipyard "
                f"numbers them); for a folder of Parquet files end it with a slash ({uri}/)"
            )
        return OutputSpec(parsed.key)
    return OutputSpec(dataset, _file_kind(uri, uri), str(path.resolve()))


def _file_kind(uri: str, path: str) -> Kind:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        what = f"the suffix {suffix!r} is not a format shipyard writes" if suffix else "no suffix"
        raise InvalidArgumentError(f"--output {uri}: {what}; {_CHOICES}")
    return "csv" if SUFFIXES[suffix] == "csv" else "parquet"


def _without_password(url: str) -> str:
    """``url`` without the password of its user part (``ftp://ann:pw@host/x``)."""
    parts = urlsplit(url)
    if "://" not in url or parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def filesystem(spec: OutputSpec) -> tuple[Any, str]:
    """The fsspec filesystem of a file or folder export and the target's path in it."""
    import fsspec

    assert spec.target is not None  # noqa: S101 - narrows the type; the caller guarantees it
    scheme = spec.target.split("://", 1)[0] if "://" in spec.target else "file"
    try:
        fs, path = fsspec.core.url_to_fs(spec.target)
    except ImportError as exc:
        extra = " pip install 'shipyard[s3]'" if scheme in ("s3", "s3a") else ""
        raise MissingDependencyError(
            f"--output {spec.describe()}: writing to {scheme}:// needs a library that is not "
            f"installed ({exc});{extra or ' install the fsspec package for ' + scheme + '://'}"
        ) from exc
    except ValueError as exc:
        raise InvalidArgumentError(
            f"--output {spec.describe()}: {exc}; use a path on this machine or a URL fsspec "
            "knows (s3://, gs://, az://, memory://, file://)"
        ) from exc
    return fs, str(path)


def check_output(spec: OutputSpec) -> None:
    """Refuse, before anything is scored, an export that could not be written.

    A database must be reachable, and an existing ``--table`` must be a predictions table
    (one with a ``batch_id`` column). A file or folder needs its library (s3fs for ``s3://``),
    an existing bucket or parent it may read, and a folder may hold only an earlier export.
    """
    if spec.kind == "sql":
        _check_sql(spec)
    elif spec.target is not None:
        fs, path = filesystem(spec)
        try:
            _check_place(spec, fs, path)
        except (DataSourceError, InvalidArgumentError):
            raise
        except Exception as exc:  # a store's own errors: credentials, network, endpoint
            raise DataSourceError(
                f"cannot reach --output {spec.describe()}: {type(exc).__name__}: {exc}; check "
                "the URL, the credentials (for S3: AWS_ACCESS_KEY_ID / AWS_PROFILE) and the "
                "endpoint (AWS_ENDPOINT_URL for an S3-compatible server)"
            ) from exc


def _check_place(spec: OutputSpec, fs: Any, path: str) -> None:
    if spec.local:
        target = Path(path)
        parent = target if spec.kind == "folder" else target.parent
        existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
            raise DataSourceError(
                f"--output {spec.describe()}: cannot create files below {existing or parent}; "
                "choose a folder you may write to"
            )
        if spec.kind != "folder" and target.is_dir():
            raise InvalidArgumentError(
                f"--output {spec.describe()} is a folder; end it with a slash for Parquet part "
                "files, or name a file"
            )
    elif _protocol(fs) in BUCKET_STORES:
        root = path.strip("/").split("/", 1)[0]
        try:
            fs.info(root)
        except FileNotFoundError as exc:
            raise DataSourceError(
                f"--output {spec.describe()}: the bucket {root!r} does not exist or these "
                "credentials cannot see it; create the bucket, or fix the URL or the "
                "credentials (for S3: AWS_PROFILE or AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL)"
            ) from exc
    if spec.kind == "folder":
        foreign = [name for name in folder_names(fs, path) if not _exported(name)]
        if foreign:
            raise InvalidArgumentError(
                f"--output {spec.describe()} holds files shipyard did not write "
                f"({', '.join(sorted(foreign)[:3])}); choose a new or empty folder"
            )


def _protocol(fs: Any) -> str:
    protocol = fs.protocol
    return str(protocol[0] if isinstance(protocol, tuple | list) else protocol)


def folder_names(fs: Any, path: str) -> list[str]:
    """The names of the entries of the folder ``path`` (none when it does not exist)."""
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    names = [str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries]
    return [name for name in names if name and name != path.rstrip("/").rsplit("/", 1)[-1]]


def _exported(name: str) -> bool:
    """True for a file a folder export writes (its parts and its marker)."""
    return name == SUCCESS or bool(PART.match(name))


def _check_sql(spec: OutputSpec) -> None:
    assert spec.target is not None  # noqa: S101 - narrows the type; the caller guarantees it
    assert spec.table is not None  # noqa: S101 - narrows the type; the caller guarantees it
    engine = sql_engine(spec.target)
    try:
        with engine.connect() as connection:
            sql_table(connection, spec.table)
    except sa.exc.SQLAlchemyError as exc:
        raise DataSourceError(f"cannot reach the output database {spec.describe()}: {exc}") from exc
    finally:
        engine.dispose()


def sql_engine(url: str) -> sa.Engine:
    """An engine for a database ``--output``."""
    try:
        return sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise DataSourceError(f"cannot open the output database: {exc}") from exc


def sql_table(connection: sa.Connection, table: str) -> sa.Table | None:
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
