"""The prediction log's table: every answered request the model server logged, and its reads.

:class:`PredictionLogStore` is the one place that reads and writes ``prediction_log``:

- the server's writer thread (:mod:`shipyard.serving.predlog`) hands it batches of encoded
  rows (:data:`LogRow`) to :meth:`~PredictionLogStore.append`, one transaction per batch;
- monitoring reads a window of answered requests (:meth:`~PredictionLogStore.answered`);
- the predictions store pages through them beside the batch jobs
  (:meth:`~PredictionLogStore.page`) and applies retention (:meth:`~PredictionLogStore.prune`);
- :meth:`~PredictionLogStore.read` gives them back as a DataFrame (tests, feedback).

One row per request: ``inputs`` holds the validated request rows as records
(``[{"col": value, ...}, ...]``), ``outputs`` ``{"predictions": [...]}`` plus
``"probabilities"`` and ``"classes"`` for classifiers, and ``"rows"`` (the request's full
row count) when the server logged only the first rows of a long request
(``[serving] prediction_log_max_rows``); ``shadow`` marks answers a shadow model computed
but the client never saw. ``request_id`` is indexed (lookups by key stay fast).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from shipyard.store import Database
from shipyard.store.tables import PredictionLogEntry

if TYPE_CHECKING:
    import pandas as pd

#: The columns of a frame of :meth:`PredictionLogStore.read`, in order.
COLUMNS = [
    "id", "model", "version", "request_id", "at", "latency_ms", "inputs", "outputs", "shadow",
]  # fmt: skip

#: One row to append: (model, version, request id, time (UTC), latency in ms, inputs as JSON
#: text, outputs as JSON text, shadow). The JSON is encoded by the writer, not here.
LogRow = tuple[str, int, str, datetime, float, str, str, bool]

_TABLE = PredictionLogEntry.metadata.tables[PredictionLogEntry.__tablename__]
_INSERT = (
    "INSERT INTO prediction_log (model, version, request_id, at, latency_ms, inputs, outputs, "
    "shadow) VALUES "
)
#: Placeholders per backend (PostgreSQL's JSON columns take the text with a cast).
_VALUES = {
    "sqlite": "(?, ?, ?, ?, ?, ?, ?, ?)",
    "postgresql": "(%s, %s, %s, %s, %s, %s::json, %s::json, %s)",
}
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime in SQLite


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One logged request, its JSON columns decoded and ``at`` timezone-aware (UTC)."""

    id: int
    model: str
    version: int
    request_id: str
    at: datetime
    inputs: list[dict[str, Any]]
    outputs: dict[str, Any]


def _logged(entry: Any) -> LoggedRequest:
    inputs = entry.inputs if isinstance(entry.inputs, list) else json.loads(entry.inputs)
    outputs = entry.outputs if isinstance(entry.outputs, dict) else json.loads(entry.outputs)
    return LoggedRequest(
        entry.id, entry.model, entry.version, entry.request_id, entry.at, inputs, outputs
    )


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A logged request as a list shows it: when, how fast, how many rows, what it answered.

    ``predictions`` holds the first few predictions only (:data:`SHOWN_PREDICTIONS`).
    """

    id: int
    model: str
    version: int
    request_id: str
    at: datetime
    latency_ms: float
    shadow: bool
    rows: int
    predictions: list[Any]


#: Predictions a :class:`LogEntry` keeps of its answer.
SHOWN_PREDICTIONS = 5


def _entry(row: Any) -> LogEntry:
    outputs = row.outputs if isinstance(row.outputs, dict) else json.loads(row.outputs)
    predictions = outputs.get("predictions") or []
    rows = outputs.get("rows")
    return LogEntry(
        id=row.id,
        model=row.model,
        version=row.version,
        request_id=row.request_id,
        at=row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC),
        latency_ms=float(row.latency_ms),
        shadow=bool(row.shadow),
        rows=int(rows) if isinstance(rows, int) else len(predictions),
        predictions=list(predictions[:SHOWN_PREDICTIONS]),
    )


class PredictionLogStore:
    """Reads and writes of ``prediction_log`` (the online prediction log) in ``database``."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- writing --------------------------------------------------------------------------

    def append(self, rows: Sequence[LogRow]) -> int:
        """Insert ``rows`` in one transaction (all or none); the number of rows inserted.

        The rows go through the driver's ``executemany`` as they are (the writer thread
        holds the GIL, which the event loop needs, a few microseconds a row). A failure
        raises the database's error and inserts nothing.
        """
        if not rows:
            return 0
        backend = self.database.backend
        params: Sequence[tuple[Any, ...]] = rows
        if backend == "sqlite":
            params = [
                (*row[:3], row[3].strftime(_SQLITE_TIME), *row[4:7], int(row[7])) for row in rows
            ]
        sql = _INSERT + _VALUES.get(backend, _VALUES["postgresql"])
        with self.database.engine.begin() as connection:
            connection.exec_driver_sql(sql, list(params))
        return len(rows)

    def present(self, rows: Sequence[LogRow]) -> set[tuple[str, str, bool]]:
        """Which (model, request id, shadow) of ``rows`` are logged already (a spool replay)."""
        ids = sorted({row[2] for row in rows})
        found: set[tuple[str, str, bool]] = set()
        columns = (_TABLE.c.model, _TABLE.c.request_id, _TABLE.c.shadow)
        with self.database.engine.connect() as connection:
            for start in range(0, len(ids), 500):
                query = sa.select(*columns).where(_TABLE.c.request_id.in_(ids[start : start + 500]))
                found.update((m, r, bool(s)) for m, r, s in connection.execute(query))
        return found

    # -- reading --------------------------------------------------------------------------

    def read(
        self,
        model: str,
        since: datetime | None = None,
        limit: int = 10_000,
        *,
        shadow: bool | None = None,
    ) -> pd.DataFrame:
        """Logged predictions of ``model`` (at or after ``since``), oldest first, at most ``limit``.

        Columns :data:`COLUMNS`: id, model, version, request_id, at (UTC), latency_ms, inputs
        (records), outputs (``predictions``, ``probabilities``, ``classes``), shadow.
        ``shadow`` = True or False keeps only shadow or only answered predictions (default:
        both).
        """
        import pandas as pd

        query = sa.select(*(_TABLE.c[name] for name in COLUMNS)).where(_TABLE.c.model == model)
        if since is not None:
            if since.tzinfo is None:  # a naive time means UTC, as everywhere in shipyard
                since = since.replace(tzinfo=UTC)
            query = query.where(_TABLE.c.at >= since)
        if shadow is not None:
            query = query.where(_TABLE.c.shadow == shadow)
        query = query.order_by(_TABLE.c.id).limit(limit)
        with self.database.engine.connect() as connection:
            rows = [tuple(row) for row in connection.execute(query)]
        frame = pd.DataFrame(rows, columns=COLUMNS)
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        return frame

    def answered(
        self, model: str, start: datetime, end: datetime, *, version: int | None = None
    ) -> list[LoggedRequest]:
        """The answered (not shadow) requests of ``model`` logged in ``[start, end)``, by id.

        ``version`` keeps one version's requests only (a monitoring window).
        """
        query = sa.select(
            _TABLE.c.id,
            _TABLE.c.model,
            _TABLE.c.request_id,
            _TABLE.c.version,
            _TABLE.c.at,
            _TABLE.c.inputs,
            _TABLE.c.outputs,
        ).where(
            _TABLE.c.model == model,
            _TABLE.c.shadow.is_(False),
            _TABLE.c.at >= start,
            _TABLE.c.at < end,
        )
        if version is not None:
            query = query.where(_TABLE.c.version == version)
        with self.database.engine.connect() as connection:
            return [_logged(entry) for entry in connection.execute(query.order_by(_TABLE.c.id))]

    def page(
        self,
        from_id: int,
        limit: int,
        *,
        model: str | None = None,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        request_id: str | None = None,
    ) -> list[LoggedRequest]:
        """At most ``limit`` answered (not shadow) requests with id ``>= from_id``, by id.

        The filters are optional: ``model``, ``version``, ``at`` in ``[since, until]`` (both
        ends included) and one ``request_id``. Paging goes on from the last id plus one.
        """
        query = sa.select(_TABLE).where(_TABLE.c.id >= from_id, _TABLE.c.shadow.is_(False))
        if model:
            query = query.where(_TABLE.c.model == model)
        if version is not None:
            query = query.where(_TABLE.c.version == version)
        if since is not None:
            query = query.where(_TABLE.c.at >= since)
        if until is not None:
            query = query.where(_TABLE.c.at <= until)
        if request_id is not None:
            query = query.where(_TABLE.c.request_id == request_id)
        query = query.order_by(_TABLE.c.id).limit(limit)
        with self.database.engine.connect() as connection:
            return [_logged(entry) for entry in connection.execute(query)]

    def recent(
        self, limit: int, *, before_id: int | None = None, model: str | None = None
    ) -> list[LogEntry]:
        """At most ``limit`` logged requests (shadow ones too), newest first, by id.

        Keyset paging for people: the next page is ``before_id`` = the last entry's id. The
        request rows (``inputs``) are not read, only a summary of the answer.
        """
        query = sa.select(
            _TABLE.c.id,
            _TABLE.c.model,
            _TABLE.c.version,
            _TABLE.c.request_id,
            _TABLE.c.at,
            _TABLE.c.latency_ms,
            _TABLE.c.shadow,
            _TABLE.c.outputs,
        )
        if before_id is not None:
            query = query.where(_TABLE.c.id < before_id)
        if model:
            query = query.where(_TABLE.c.model == model)
        query = query.order_by(_TABLE.c.id.desc()).limit(limit)
        with self.database.engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query)]

    # -- retention ------------------------------------------------------------------------

    def prune(self, older_than: datetime) -> int:
        """Delete the entries logged before ``older_than`` (aware); the number deleted."""
        with self.database.engine.begin() as connection:
            result = connection.execute(sa.delete(_TABLE).where(_TABLE.c.at < older_than))
            return int(result.rowcount or 0)
