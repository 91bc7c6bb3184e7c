"""The exposure API: stored predictions and dataset versions, read by other applications.

Every route is a ``GET`` under ``/v1`` (so it needs the ``read`` scope when auth is on) and
answers errors as the rest of the server does: ``{"error", "type", "request_id"}`` with 400
for a bad parameter, 404 for what does not exist, 409 for an ambiguous dataset name.

- ``/v1/predictions?model=&version=&since=&until=&key=&source=batch|online&cursor=&limit=``:
  batch predictions and the online prediction log as one stream of rows
  (:meth:`~shipyard.datasets.predictions.PredictionStore.rows`), ``limit`` rows a page
  (default 1,000, at most 100,000): ``{"predictions": [...], "count", "next_cursor"}``;
- ``/v1/predictions/jobs?model=&version=``: the batch jobs, ``{"jobs": [...]}``;
- ``/v1/datasets?zone=``: the newest version of every dataset, ``{"datasets": [...]}``;
- ``/v1/datasets/{name}?zone=``: every version of a dataset, newest first;
- ``/v1/datasets/{name}/versions/{version}?zone=``: one version and its Arrow schema;
- ``/v1/datasets/{name}/versions/{version}/rows?zone=&limit=&cursor=``: its rows — one page
  with ``limit``, else the whole version streamed one record batch at a time.

Prediction pages and rows come as JSON, CSV, Parquet or an Arrow IPC stream
(:mod:`shipyard.serving.data.exposure_formats`), chosen by ``format=`` or else the Accept
header. A page that has a next one names it in the ``x-next-cursor`` header and a
``Link: <url>; rel="next"`` header too (and in the JSON body). Nothing here holds more than
one part of a dataset in memory, and the reading and encoding run in worker threads, never
on the event loop.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import AsyncIterator, Generator, Iterator
from datetime import datetime, timedelta
from typing import Annotated, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Query
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shipyard.core.exceptions import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
)
from shipyard.core.refs import NAME_RE, ZONES
from shipyard.datasets import DatasetInfo, Datasets
from shipyard.datasets.predictions import PredictionStore, RowFilter, as_utc, encode_cursor
from shipyard.serving.data.exposure_formats import (
    FORMATS,
    choose_format,
    conform,
    dump_rows,
    make_encoder,
    prediction_table,
)
from shipyard.serving.data.redact import public
from shipyard.serving.state import server_state

router = APIRouter(prefix="/v1", tags=["exposure"])

DEFAULT_LIMIT = 1_000
MAX_LIMIT = 100_000
#: The largest version number (model and dataset versions are 32-bit integers in the database).
MAX_VERSION = 2**31 - 1
#: The largest position a dataset rows cursor may name (a 64-bit integer).
_MAX_POSITION = 2**63 - 1
#: Rows per record batch a dataset is read and written in.
BATCH_ROWS = 8_192
_DATE_ONLY = re.compile(r"^\d{4}-?\d{2}-?\d{2}$")

Text = str | None
Zone = Annotated[Text, Query(description=f"The dataset's zone: {', '.join(ZONES)}.")]
Format = Annotated[
    Text,
    Query(
        alias="format",
        description=f"{', '.join(FORMATS)}; without it the Accept header decides (JSON else).",
    ),
]
Cursor = Annotated[Text, Query(description="The next_cursor of the previous page.")]


# -- parameters ---------------------------------------------------------------------------


def parse_limit(text: Text, default: int | None) -> int | None:
    """``limit=`` as a number of rows (1 to :data:`MAX_LIMIT`), or ``default`` when absent."""
    if text is None or not text.strip():
        return default
    limit = parse_int("limit", text)
    if limit is None or limit < 1 or limit > MAX_LIMIT:
        raise InvalidArgumentError(
            f"limit must be between 1 and {MAX_LIMIT} rows but got {text!r}; page through "
            "more with the cursor each page gives"
        )
    return limit


def parse_int(name: str, text: Text) -> int | None:
    """A whole-number parameter, or None when absent."""
    if text is None or not text.strip():
        return None
    try:
        return int(text.strip())
    except ValueError as exc:
        raise InvalidArgumentError(
            f"{name} must be a whole number (e.g. {name}=3) but got {text!r}"
        ) from exc


def parse_version(name: str, text: Text) -> int | None:
    """A version number parameter (1 to :data:`MAX_VERSION`), or None when absent."""
    number = parse_int(name, text)
    if number is not None and not 1 <= number <= MAX_VERSION:
        raise InvalidArgumentError(
            f"{name} must be a number from 1 to {MAX_VERSION} but got {text!r}"
        )
    return number


def parse_time(name: str, text: Text, *, end_of_day: bool = False) -> datetime | None:
    """An ISO-8601 date or datetime parameter in UTC (no zone: UTC), or None when absent.

    A date alone is the start of that day, or with ``end_of_day`` its last microsecond (so
    ``until=2024-05-01`` includes that day).
    """
    if text is None or not text.strip():
        return None
    raw = text.strip()
    # an unescaped '+' of a zone offset arrives as a space: put it back
    for candidate in (raw, "+".join(raw.rsplit(" ", 1))):
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        try:
            if end_of_day and _DATE_ONLY.match(candidate):
                moment += timedelta(days=1, microseconds=-1)
            return as_utc(moment)
        except OverflowError as exc:  # e.g. 9999-12-31T23:00-05:00 is past year 9999 in UTC
            raise InvalidArgumentError(
                f"{name} {text!r} is outside the times this server handles (years 1 to 9999 "
                "in UTC); leave it out to have no bound"
            ) from exc
    raise InvalidArgumentError(
        f"{name} must be an ISO-8601 date or datetime, e.g. {name}=2024-05-01 or "
        f"{name}=2024-05-01T12:00:00Z (no zone means UTC), but got {text!r}"
    )


def _next_headers(request: Request, next_cursor: str | None) -> dict[str, str]:
    if next_cursor is None:
        return {}
    url = request.url.include_query_params(cursor=next_cursor)
    return {"x-next-cursor": next_cursor, "link": f'<{url}>; rel="next"'}


def _json(content: Any) -> Response:
    return Response(dump_rows(content), media_type=FORMATS["json"])


def _datasets(request: Request) -> Datasets:
    return server_state(request.app).datasets


def _predictions(request: Request) -> PredictionStore:
    return server_state(request.app).predictions


# -- predictions --------------------------------------------------------------------------


@router.get("/predictions")
async def list_predictions(
    request: Request,
    model: Annotated[Text, Query(description="Only this model.")] = None,
    version: Annotated[Text, Query(description="Only this model version.")] = None,
    since: Annotated[Text, Query(description="Scored at or after (ISO-8601; UTC).")] = None,
    until: Annotated[Text, Query(description="Scored at or before (ISO-8601; UTC).")] = None,
    key: Annotated[Text, Query(description="The row key (batch) or request id (online).")] = None,
    source: Annotated[Text, Query(description="batch or online (default both).")] = None,
    cursor: Cursor = None,
    limit: Annotated[Text, Query(description=f"Rows a page, at most {MAX_LIMIT}.")] = None,
    format_: Format = None,
) -> Response:
    """One page of prediction rows: batch jobs' outputs, then the online prediction log."""
    chosen = choose_format(format_, request.headers.get("accept"))
    where = RowFilter(
        model=model or None,
        version=parse_version("version", version),
        since=parse_time("since", since),
        until=parse_time("until", until, end_of_day=True),
        key=key or None,
        source=source or None,
    )
    size = parse_limit(limit, DEFAULT_LIMIT) or DEFAULT_LIMIT
    store = _predictions(request)
    rows, next_cursor = await run_in_threadpool(
        store.rows, where, cursor=cursor or None, limit=size
    )
    headers = _next_headers(request, next_cursor)
    if chosen == "json":
        content = {"predictions": rows, "count": len(rows), "next_cursor": next_cursor}
        body = await run_in_threadpool(dump_rows, content)
    else:
        body = await run_in_threadpool(_encode_predictions, chosen, rows, next_cursor)
    return Response(body, media_type=FORMATS[chosen], headers=headers)


def _encode_predictions(chosen: str, rows: list[dict[str, Any]], next_cursor: str | None) -> bytes:
    table = prediction_table(rows)
    encoder = make_encoder(chosen, table.schema, json_key="predictions")
    return encoder.encode(table.to_batches(), next_cursor)


@router.get("/predictions/jobs")
async def list_jobs(
    request: Request,
    model: Annotated[Text, Query(description="Only this model.")] = None,
    version: Annotated[Text, Query(description="Only this model version.")] = None,
) -> Response:
    """The batch scoring jobs, oldest first."""
    number = parse_version("version", version)
    jobs = await run_in_threadpool(_predictions(request).jobs, model or None, number)
    return Response(
        dump_rows({"jobs": [public(job.to_dict(), request) for job in jobs]}),
        media_type=FORMATS["json"],
    )


# -- datasets -----------------------------------------------------------------------------


def find_zone(datasets: Datasets, name: str, zone: Text) -> str:
    """The zone holding dataset ``name``: ``zone`` when given, else the only one that has it."""
    if not NAME_RE.match(name):
        raise InvalidArgumentError(
            f"{name!r} is not a dataset name: letters, digits, '_', '.' or '-', starting with "
            "a letter or digit"
        )
    if zone:
        if zone not in ZONES:
            raise InvalidArgumentError(f"zone must be one of {', '.join(ZONES)} but got {zone!r}")
        return zone
    found = [z for z in ZONES if datasets.exists(f"{z}/{name}")]
    if not found:
        raise NotFoundError(f"no dataset called {name!r} in any zone; GET /v1/datasets lists them")
    if len(found) > 1:
        raise ConflictError(
            f"a dataset called {name!r} is in the zones {', '.join(found)}; add ?zone="
            f"{found[0]} (or ?zone={found[1]}) to say which one"
        )
    return found[0]


def version_info(datasets: Datasets, name: str, version: str, zone: Text) -> DatasetInfo:
    """Version ``version`` of dataset ``name`` (in ``zone``, or the only zone that has it)."""
    number = parse_version("version", version)
    if number is None:
        raise InvalidArgumentError(f"version must be a number from 1 but got {version!r}")
    found = find_zone(datasets, name, zone)
    try:
        return datasets.get(f"{found}/{name}:{number}")
    except NotFoundError as exc:
        raise NotFoundError(
            f"dataset {found}/{name} has no version {number}; GET /v1/datasets/{name}?zone="
            f"{found} lists its versions"
        ) from exc


def _describe_dataset(datasets: Datasets, name: str, zone: Text) -> dict[str, Any]:
    found = find_zone(datasets, name, zone)
    versions = datasets.versions(f"{found}/{name}")
    if not versions:
        raise NotFoundError(
            f"no dataset {found}/{name}; GET /v1/datasets?zone={found} lists that zone"
        )
    return {"name": name, "zone": found, "versions": [v.to_dict() for v in versions]}


def _describe_version(datasets: Datasets, name: str, version: str, zone: Text) -> dict[str, Any]:
    info = version_info(datasets, name, version, zone)
    fields = [{"name": f.name, "type": str(f.type)} for f in datasets.schema(info)]
    return {**info.to_dict(), "schema": fields}


@router.get("/datasets")
async def list_datasets(request: Request, zone: Zone = None) -> Response:
    """The newest version of every dataset (in ``zone`` if given)."""
    infos = await run_in_threadpool(_datasets(request).list, zone or None)
    return Response(
        dump_rows({"datasets": [public(i.to_dict(), request) for i in infos]}),
        media_type=FORMATS["json"],
    )


@router.get("/datasets/{name}")
async def show_dataset(request: Request, name: str, zone: Zone = None) -> Response:
    """Every version of dataset ``name``, newest first."""
    content = await run_in_threadpool(_describe_dataset, _datasets(request), name, zone)
    content["versions"] = [public(v, request) for v in content["versions"]]
    return _json(content)


@router.get("/datasets/{name}/versions/{version}")
async def show_version(request: Request, name: str, version: str, zone: Zone = None) -> Response:
    """One dataset version and its columns' Arrow types (``schema``)."""
    content = await run_in_threadpool(_describe_version, _datasets(request), name, version, zone)
    return _json(public(content, request))


class RowReader:
    """A dataset version's rows from a position on, one part and one batch at a time.

    :meth:`encode` yields the answer's bytes piece by piece; after it ran, with a ``limit``,
    :attr:`next_cursor` names the page after (None when the rows ran out).
    """

    def __init__(
        self,
        datasets: Datasets,
        info: DatasetInfo,
        *,
        cursor: str | None = None,
        limit: int | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.datasets = datasets
        self.info = info
        self.digests = datasets.parts(info)
        self.part, self.offset = self._position(cursor) if cursor else (0, 0)
        self.limit = limit
        self.batch_rows = batch_rows
        self.next_cursor: str | None = None

    def _position(self, cursor: str) -> tuple[int, int]:
        """The part and row a cursor names, checked strictly: exactly the keys ``d`` (this
        version's reference), ``p`` (one of its parts) and ``o`` (a row, from 0)."""
        forged = InvalidArgumentError(
            f"cursor {cursor!r} is not one this server gave out; pass back the "
            "next_cursor of the previous page unchanged, or leave it out to start at the top"
        )
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            position = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        except (ValueError, UnicodeEncodeError) as exc:  # JSONDecodeError is a ValueError
            raise forged from exc
        if not isinstance(position, dict) or set(position) != {"d", "p", "o"}:
            raise forged
        ref, part, offset = position["d"], position["p"], position["o"]
        if not (isinstance(ref, str) and _position_number(part) and _position_number(offset)):
            raise forged
        if ref != self.info.ref:
            raise InvalidArgumentError(
                f"cursor {cursor!r} belongs to the rows of {ref}, not {self.info.ref}; leave it "
                "out to start at the top"
            )
        if part >= len(self.digests):
            raise forged  # this version has fewer parts: not a cursor it gave out
        return part, offset

    def encode(self, format_name: str) -> Generator[bytes, None, None]:
        """The rows in ``format_name``, a piece of bytes per record batch."""
        encoder = None
        left = self.limit
        for part in range(self.part, len(self.digests)):
            with self.datasets.local_part(self.digests[part]) as path, pq.ParquetFile(path) as file:
                if encoder is None:
                    encoder = make_encoder(format_name, file.schema_arrow)
                    yield encoder.begin()
                done = self.offset if part == self.part else 0
                for batch in batches_after(file, done, self.batch_rows):
                    if left is not None and batch.num_rows >= left:
                        yield encoder.write(conform(batch.slice(0, left), encoder.schema))
                        self.next_cursor = self._after(part, done + left, file.metadata.num_rows)
                        yield encoder.end(self.next_cursor)
                        return
                    yield encoder.write(conform(batch, encoder.schema))
                    done += batch.num_rows
                    if left is not None:
                        left -= batch.num_rows
        if encoder is None:  # pragma: no cover - a version has one part at least
            encoder = make_encoder(format_name, self.datasets.schema(self.info))
            yield encoder.begin()
        yield encoder.end(None)

    def _after(self, part: int, done: int, part_rows: int) -> str | None:
        if done >= part_rows:
            part, done = part + 1, 0
        if part >= len(self.digests):
            return None
        return encode_cursor({"d": self.info.ref, "p": part, "o": done})


def _position_number(value: Any) -> bool:
    """Whether a cursor's ``value`` is a row or part number (an int from 0, not a bool)."""
    return type(value) is int and 0 <= value <= _MAX_POSITION


def batches_after(file: pq.ParquetFile, skip: int, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The record batches of ``file`` after its first ``skip`` rows (whole row groups skipped)."""
    groups: list[int] = []
    passed = 0
    for group in range(file.num_row_groups):
        rows = file.metadata.row_group(group).num_rows
        if groups or passed + rows > skip:
            groups.append(group)
        else:
            passed += rows
    if not groups:
        return
    skip -= passed
    for batch in file.iter_batches(batch_size=batch_rows, row_groups=groups):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        yield batch.slice(skip) if skip else batch
        skip = 0


async def _streamed(first: bytes, rest: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """``first``, then the pieces of ``rest``, each made in a worker thread."""
    try:
        yield first
        async for piece in iterate_in_threadpool(rest):
            yield piece
    finally:  # the client may leave early: drop the part being read now, not at collection
        with contextlib.suppress(ValueError):
            rest.close()


@router.get("/datasets/{name}/versions/{version}/rows")
async def dataset_rows(
    request: Request,
    name: str,
    version: str,
    zone: Zone = None,
    format_: Format = None,
    limit: Annotated[Text, Query(description=f"Rows a page (at most {MAX_LIMIT}).")] = None,
    cursor: Cursor = None,
) -> Response:
    """A dataset version's rows: one page with ``limit``, else all of them, streamed."""
    chosen = choose_format(format_, request.headers.get("accept"))
    size = parse_limit(limit, None)
    datasets = _datasets(request)

    def open_reader() -> RowReader:
        info = version_info(datasets, name, version, zone)
        return RowReader(datasets, info, cursor=cursor or None, limit=size)

    reader = await run_in_threadpool(open_reader)
    pieces = reader.encode(chosen)
    if size is not None:
        body = await run_in_threadpool(b"".join, pieces)
        headers = _next_headers(request, reader.next_cursor)
        return Response(body, media_type=FORMATS[chosen], headers=headers)
    # the first piece (and the first part's download) before the status: a failure there
    # is still an error answer, not a cut-off stream
    first = await run_in_threadpool(next, pieces)
    return StreamingResponse(_streamed(first, pieces), media_type=FORMATS[chosen])
