"""The predictions store: batch outputs and the online prediction log, queried as one.

- Batch jobs write their predictions as dataset versions in the ``predictions`` zone (one
  Parquet part per chunk) and are indexed in ``batch_jobs`` (model, version, input, output,
  rows, times, the dataset version). A job's record is also its resume state.
- The model server writes every answered request to ``prediction_log``, whose store is
  :class:`~shipyard.datasets.prediction_log.PredictionLogStore`.

:meth:`PredictionStore.rows` reads both as one stream of prediction rows, filtered by
model, version, time range and key, in a stable order — succeeded batch jobs by the time
they finished (then id) and each job's rows in part order, then the online log by id — and
pages with an opaque cursor, never holding more than one part of a dataset in memory. A
job that succeeds or a request logged while a client pages appears after what it has
read, so paging to the end gives every row exactly once. A cursor carries the filters it
was made for: passing it with other filters is refused. :meth:`PredictionStore.prune`
applies the retention setting.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import InvalidArgumentError, NotFoundError
from shipyard.core.refs import DatasetRef
from shipyard.datasets.prediction_log import LoggedRequest, PredictionLogStore
from shipyard.datasets.store import Datasets
from shipyard.store import Database
from shipyard.store.tables import BatchJob

if TYPE_CHECKING:  # Arrow loads when prediction parts are read, not to list jobs
    import pyarrow as pa

SOURCES = ("batch", "online")
#: The columns of a prediction row as :meth:`PredictionStore.rows` gives it.
ROW_COLUMNS = (
    "source", "model", "version", "batch_id", "request_id", "key", "scored_at",
    "prediction", "probabilities",
)  # fmt: skip
_ROW_ID = "row_id"
#: Rows turned into records at a time (a page stops early without converting the rest).
_RECORD_SLICE = 1024
#: Online log entries fetched per query.
_LOG_FETCH = 500


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class JobInfo:
    """One batch job as recorded in ``batch_jobs``."""

    id: str
    spec_hash: str
    ref: str
    model: str
    version: int
    input: str
    output: str
    engine: str
    chunk_rows: int
    key_columns: list[str]
    status: str
    rows: int
    rows_reused: int
    chunks: int
    chunks_reused: int
    dataset: str | None
    work_dir: str
    started_at: datetime
    finished_at: datetime | None
    error: str
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``shipyard predictions list --json``, ``GET /v1/predictions/jobs``)."""
        data = {k: v for k, v in self.__dict__.items() if k not in ("spec_hash", "work_dir")}
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return data


def _job(row: BatchJob) -> JobInfo:
    dataset = (
        f"{row.dataset_zone}/{row.dataset_name}:{row.dataset_version}"
        if row.dataset_name and row.dataset_version
        else None
    )
    return JobInfo(
        id=row.id,
        spec_hash=row.spec_hash,
        ref=row.ref,
        model=row.model,
        version=row.version,
        input=row.input,
        output=row.output,
        engine=row.engine,
        chunk_rows=row.chunk_rows,
        key_columns=list(row.key_columns),
        status=row.status,
        rows=row.rows,
        rows_reused=row.rows_reused,
        chunks=row.chunks,
        chunks_reused=row.chunks_reused,
        dataset=dataset,
        work_dir=row.work_dir,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        created_by=row.created_by,
    )


@dataclass(frozen=True)
class RowFilter:
    """What :meth:`PredictionStore.rows` keeps."""

    model: str | None = None
    version: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    key: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        # the timestamp columns take aware datetimes only; naive means UTC here
        if self.since is not None:
            object.__setattr__(self, "since", as_utc(self.since))
        if self.until is not None:
            object.__setattr__(self, "until", as_utc(self.until))
        if self.source is not None and self.source not in SOURCES:
            raise InvalidArgumentError(
                f"source must be one of {', '.join(SOURCES)} but got {self.source!r}"
            )
        if self.since and self.until and self.since > self.until:
            raise InvalidArgumentError(
                f"since ({self.since.isoformat()}) is after until ({self.until.isoformat()})"
            )

    @property
    def fingerprint(self) -> str:
        """A short hash of the filters: a cursor names the filters it was given out for."""
        fields = [
            self.model,
            self.version,
            self.since.isoformat() if self.since else None,
            self.until.isoformat() if self.until else None,
            self.key,
            self.source,
        ]
        return hashlib.sha256(orjson.dumps(fields)).hexdigest()[:16]


#: The fields a cursor of each source may hold and their types (anything else, or a number
#: outside 0 .. 2**63 - 1, is a forged or broken cursor).
_CURSOR_FIELDS: dict[str, dict[str, type]] = {
    "batch": {"s": str, "f": str, "j": str, "t": str, "p": int, "o": int},
    "online": {"s": str, "f": str, "id": int, "r": int},
}
_MAX_CURSOR_INT = 2**63 - 1
_MAX_CURSOR_TEXT = 200


def encode_cursor(position: dict[str, Any]) -> str:
    """An opaque cursor for a position in the stream of rows."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The position a cursor from :func:`encode_cursor` names."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # orjson, not json: a forged cursor of deeply nested arrays is an error, not a crash
        position = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(position, dict) or position.get("s") not in SOURCES:
            raise ValueError("no source")
        fields = _CURSOR_FIELDS[position["s"]]
        for name, value in position.items():
            kind = fields.get(name)
            if kind is None or type(value) is not kind:
                raise ValueError(name)
            if isinstance(value, int) and not 0 <= value <= _MAX_CURSOR_INT:
                raise ValueError(name)
            if isinstance(value, str) and len(value) > _MAX_CURSOR_TEXT:
                raise ValueError(name)
        if "t" in position:  # the finish time of the job it resumes in: a real moment
            as_utc(datetime.fromisoformat(position["t"]))
    except (ValueError, OverflowError, UnicodeEncodeError) as exc:
        raise InvalidArgumentError(
            f"cursor {cursor!r} is not one this server gave out; pass back the next_cursor "
            "of the previous page unchanged, or leave it out to start from the beginning"
        ) from exc
    return position


class PredictionStore:
    """Batch job records, their prediction datasets, and the online prediction log."""

    def __init__(self, database: Database, datasets: Datasets) -> None:
        self.database = database
        self.datasets = datasets
        self.log = PredictionLogStore(database)

    # -- batch job records ----------------------------------------------------------------

    def create_job(self, **values: Any) -> JobInfo:
        """Record a new running job (``values``: the :class:`BatchJob` columns)."""
        with self.database.session() as session:
            row = BatchJob(status="running", started_at=utcnow(), error="", **values)
            session.add(row)
            session.flush()
            return _job(row)

    def update_job(self, job_id: str, **values: Any) -> JobInfo:
        """Change a job's record (status, counts, dataset version, error ...)."""
        with self.database.session() as session:
            row = session.get(BatchJob, job_id)
            if row is None:
                raise NotFoundError(f"no batch job {job_id!r}; 'shipyard predictions list'")
            for name, value in values.items():
                setattr(row, name, value)
            session.flush()
            return _job(row)

    def job(self, job_id: str) -> JobInfo:
        """One job's record."""
        with self.database.session() as session:
            row = session.get(BatchJob, job_id)
            if row is None:
                raise NotFoundError(
                    f"no batch job {job_id!r}; 'shipyard predictions list' shows the jobs"
                )
            return _job(row)

    def resumable(self, spec_hash: str) -> JobInfo | None:
        """The newest unfinished job with this spec (what ``--resume`` continues)."""
        with self.database.session() as session:
            row = session.scalar(
                sa.select(BatchJob)
                .where(BatchJob.spec_hash == spec_hash, BatchJob.status != "succeeded")
                .order_by(BatchJob.started_at.desc())
                .limit(1)
            )
            return _job(row) if row is not None else None

    def jobs(
        self,
        model: str | None = None,
        version: int | None = None,
        *,
        status: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[JobInfo]:
        """Jobs, oldest first (filtered by model, version and status)."""
        query = sa.select(BatchJob)
        if model is not None:
            query = query.where(BatchJob.model == model)
        if version is not None:
            query = query.where(BatchJob.version == version)
        if status is not None:
            query = query.where(BatchJob.status == status)
        query = query.order_by(BatchJob.started_at, BatchJob.id)
        with self.database.session() as session:
            rows = [_job(r) for r in session.scalars(query)]
        return rows[-limit:] if limit else rows

    def jobs_page(
        self, *, model: str | None = None, offset: int = 0, limit: int = 50
    ) -> tuple[builtins.list[JobInfo], int]:
        """One page of jobs, newest first (of ``model`` if given), and how many there are."""
        where = [BatchJob.model == model] if model else []
        query = (
            sa.select(BatchJob)
            .where(*where)
            .order_by(BatchJob.started_at.desc(), BatchJob.id.desc())
            .offset(offset)
            .limit(limit)
        )
        with self.database.session() as session:
            total = session.scalar(sa.select(sa.func.count()).select_from(BatchJob).where(*where))
            return [_job(r) for r in session.scalars(query)], int(total or 0)

    # -- reading predictions --------------------------------------------------------------

    def rows(
        self, where: RowFilter, *, cursor: str | None = None, limit: int = 1000
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """One page of prediction rows and the cursor of the next page (None at the end).

        Rows are dicts with the keys :data:`ROW_COLUMNS`. The page ends when ``limit`` rows
        are in it and one more row follows, so the last page's cursor is None.
        """
        if limit < 1:
            raise InvalidArgumentError(f"limit must be at least 1 but got {limit}")
        if cursor:
            position = decode_cursor(cursor)
            if position.get("f") != where.fingerprint:
                raise InvalidArgumentError(
                    f"cursor {cursor!r} was given out for other filters; repeat the model, "
                    "version, since, until, key and source of the first page with it, or leave "
                    "it out to start from the beginning"
                )
        else:
            position = {"s": "online" if where.source == "online" else "batch"}
        page: list[dict[str, Any]] = []
        last: dict[str, Any] = {}
        stream = self._stream(where, position, limit + 1)
        try:
            for row, after in stream:
                if len(page) == limit:  # one more row follows: the next page starts with it
                    return page, encode_cursor({**last, "f": where.fingerprint})
                page.append(row)
                last = after
        finally:
            stream.close()  # releases the part being read
        return page, None

    def _stream(
        self, where: RowFilter, position: dict[str, Any], wanted: int
    ) -> Generator[tuple[dict[str, Any], dict[str, Any]], None, None]:
        """Every row at or after ``position``, each with the position just after it."""
        if position["s"] == "batch" and where.source != "online":
            yield from self._batch_rows(where, position)
            position = {"s": "online"}
        if position["s"] == "online" and where.source != "batch":
            yield from self._online_rows(where, position, wanted)

    def _batch_jobs(self, where: RowFilter) -> builtins.list[JobInfo]:
        """The succeeded jobs whose rows may pass ``where``, by finish time then id."""
        query = sa.select(BatchJob).where(
            BatchJob.status == "succeeded",
            BatchJob.dataset_version.is_not(None),
            BatchJob.finished_at.is_not(None),
        )
        if where.model:
            query = query.where(BatchJob.model == where.model)
        if where.version is not None:
            query = query.where(BatchJob.version == where.version)
        if where.since is not None:  # a job's rows are scored between its start and finish
            query = query.where(BatchJob.finished_at >= where.since)
        if where.until is not None:
            query = query.where(BatchJob.started_at <= where.until)
        with self.database.session() as session:
            return [
                _job(row)
                for row in session.scalars(query.order_by(BatchJob.finished_at, BatchJob.id))
            ]

    def _batch_rows(
        self, where: RowFilter, position: dict[str, Any]
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        jobs = self._batch_jobs(where)
        start_job, start_time = position.get("j"), position.get("t")
        if start_job is not None and start_time is not None:
            # resume at the cursor's job, or at the first job after it when it is gone (pruned)
            try:
                after = (as_utc(datetime.fromisoformat(start_time)), start_job)
            except (ValueError, OverflowError) as exc:
                raise InvalidArgumentError(f"cursor time {start_time!r} is not one") from exc
            jobs = [j for j in jobs if (j.finished_at, j.id) >= after]
        for job in jobs:
            resuming = job.id == start_job
            first_part = position.get("p", 0) if resuming else 0
            offset = position.get("o", 0) if resuming else 0
            finished = job.finished_at.isoformat() if job.finished_at else ""
            if job.dataset is None:  # pragma: no cover - filtered by the query
                continue
            try:
                info = self.datasets.get(job.dataset)
            except NotFoundError:  # pruned while the client pages
                continue
            for part, digest in enumerate(self.datasets.parts(info)):
                if part < first_part:
                    continue
                table = _filtered(self._read_part(digest, job), where, job.key_columns)
                skip = offset if part == first_part else 0
                for start in range(skip, table.num_rows, _RECORD_SLICE):
                    chunk = table.slice(start, _RECORD_SLICE)
                    for number, row in enumerate(_batch_records(chunk, job), start + 1):
                        yield row, {"s": "batch", "j": job.id, "t": finished, "p": part,
                                    "o": number}  # fmt: skip

    def _read_part(self, digest: str, job: JobInfo) -> pa.Table:
        """The columns of one prediction part that rows are made of (one part in memory)."""
        import pyarrow.parquet as pq

        with self.datasets.local_part(digest) as path:
            names = pq.read_schema(path).names
            wanted = [*(job.key_columns or [_ROW_ID]), "prediction", "scored_at"]
            wanted += [n for n in names if n.startswith("proba_")]
            return pq.read_table(path, columns=[n for n in wanted if n in names])

    def _online_rows(
        self, where: RowFilter, position: dict[str, Any], wanted: int
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        after_id, after_row = int(position.get("id", 0)), int(position.get("r", -1))
        fetch = min(max(wanted, 1), _LOG_FETCH) + 1
        while True:
            entries = self.log.page(
                after_id,
                fetch,
                model=where.model,
                version=where.version,
                since=where.since,
                until=where.until,
                request_id=where.key,
            )
            if not entries:
                return
            for entry in entries:
                for number, row in enumerate(_online_records(entry)):
                    if entry.id == after_id and number <= after_row:
                        continue
                    yield row, {"s": "online", "id": entry.id, "r": number}
            after_id, after_row = entries[-1].id + 1, -1

    # -- retention ------------------------------------------------------------------------

    def prune(self, older_than: datetime) -> dict[str, int]:
        """Forget batch jobs, their prediction datasets and online log rows before ``older_than``.

        The newest version of each prediction dataset is kept, and so is the job that wrote it
        (so version numbers are never reused and the newest predictions stay readable); blobs
        stay in the artifact store until collected. A naive ``older_than`` is taken as UTC.
        """
        older_than = as_utc(older_than)
        removed = {"jobs": 0, "datasets": 0, "online": 0}
        newest = {(d.zone, d.name): d.version for d in self.datasets.list("predictions")}
        for job in self.jobs():
            stamp = job.finished_at or job.started_at
            if stamp >= older_than:
                continue
            if job.dataset is not None:
                parsed = DatasetRef.parse(job.dataset)
                if newest.get((parsed.zone, parsed.name)) == parsed.version:
                    continue
                if self.datasets.exists(job.dataset):  # it may have been deleted by hand
                    self.datasets.delete(job.dataset)
                    removed["datasets"] += 1
            with self.database.session() as session:
                session.execute(sa.delete(BatchJob).where(BatchJob.id == job.id))
            # an unfinished job's scored parts (and input copy) go with its record
            shutil.rmtree(job.work_dir, ignore_errors=True)
            removed["jobs"] += 1
        removed["online"] = self.log.prune(older_than)
        return removed


def _filtered(table: pa.Table, where: RowFilter, keys: list[str]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = None

    def both(condition: Any) -> None:
        nonlocal mask
        mask = condition if mask is None else pc.and_(mask, condition)

    if where.since is not None:
        both(pc.greater_equal(table["scored_at"], pa.scalar(where.since, table["scored_at"].type)))
    if where.until is not None:
        both(pc.less_equal(table["scored_at"], pa.scalar(where.until, table["scored_at"].type)))
    if where.key is not None:
        both(pc.equal(_key_strings(table, keys), where.key))
    return table if mask is None else table.filter(mask)


def _key_strings(table: pa.Table, keys: list[str]) -> pa.ChunkedArray:
    """Each row's key as text: the one key column, several joined by ``|``, or ``row_id``.

    The same text is the rows' ``key`` and what ``RowFilter.key`` is compared with.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = [pc.cast(table[k], pa.string()) for k in keys or [_ROW_ID]]
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "|")


def _batch_records(table: pa.Table, job: JobInfo) -> Iterator[dict[str, Any]]:
    if not table.num_rows:
        return
    probas = [c for c in table.column_names if c.startswith("proba_")]
    keys = _key_strings(table, job.key_columns).to_pylist()
    predictions = table["prediction"].to_pylist()
    scored = table["scored_at"].to_pylist()
    matrix = [table[c].to_pylist() for c in probas]
    for number in range(table.num_rows):
        yield {
            "source": "batch",
            "model": job.model,
            "version": job.version,
            "batch_id": job.id,
            "request_id": None,
            "key": keys[number],
            "scored_at": scored[number],
            "prediction": predictions[number],
            "probabilities": [m[number] for m in matrix] if matrix else None,
        }


def _online_records(entry: LoggedRequest) -> Iterator[dict[str, Any]]:
    outputs = entry.outputs
    predictions = outputs.get("predictions", [])
    probabilities = outputs.get("probabilities")
    for number, prediction in enumerate(predictions):
        yield {
            "source": "online",
            "model": entry.model,
            "version": entry.version,
            "batch_id": None,
            "request_id": entry.request_id,
            "key": entry.request_id,
            "scored_at": as_utc(entry.at),
            "prediction": prediction,
            "probabilities": probabilities[number] if probabilities else None,
        }
