"""Datasets and predictions: the zones and their versions, batch jobs and the prediction log.

- ``/ui/datasets?zone=`` — the newest version of every dataset (paged);
- ``/ui/datasets/{zone}/{name}`` — a dataset's versions, newest first (paged);
- ``/ui/datasets/{zone}/{name}/{version}`` — one version: row count, Arrow schema, lineage
  (the run and step, or the batch job, that wrote it) and its first :data:`HEAD_ROWS` rows,
  read from its first part only;
- ``/ui/predictions?model=&offset=&limit=&before=`` — batch jobs (newest first, paged) and
  the online prediction log (newest first, keyset-paged with ``before``);
- ``/ui/predictions/jobs/{job_id}`` — one job: progress, where it read and wrote, its first
  rows.

A session without the ``admin`` scope sees what the read APIs show a non-admin
(:mod:`shipyard.serving.data.redact`): files by their name only, ``sql (hidden)`` for a query,
no logins, error messages with paths cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from shipyard.core.exceptions import InvalidArgumentError, InvalidReferenceError, NotFoundError
from shipyard.core.refs import NAME_RE, ZONES, DatasetRef
from shipyard.datasets.store import DatasetInfo, Datasets
from shipyard.serving.console.deps import reader
from shipyard.serving.console.render import Paging, page, url_in
from shipyard.serving.console.session import Session
from shipyard.serving.console.state import console_state
from shipyard.serving.data.redact import location, message

router = APIRouter()

#: Rows shown of a dataset version or a job's output.
HEAD_ROWS = 20
#: Characters of one cell shown in a head table.
CELL_CHARS = 80
#: Logged requests a page of the prediction log shows.
LOG_PAGE = 50
_MAX_VERSION = 2**31 - 1

Viewer = Annotated[Session | None, Depends(reader)]


# -- shared by the console's pages ----------------------------------------------------------


def is_admin(session: Session | None) -> bool:
    """True when the viewer's session holds the ``admin`` scope (sees paths and logins)."""
    return session is not None and session.is_admin


def redacted_text(text: str, admin: bool) -> str:
    """``text`` whole for an admin, else with every path or URL cut to its last part."""
    return text if admin else message(text)


def shown(record: Mapping[str, Any], admin: bool) -> dict[str, Any]:
    """A job or dataset record as the viewer may see it (as :mod:`.data.redact` shows it)."""
    if admin:
        return dict(record)
    result = {key: value for key, value in record.items() if key not in ("created_by", "work_dir")}
    for key in ("input", "output", "source"):
        if isinstance(result.get(key), str):
            result[key] = location(result[key])
    if isinstance(result.get("error"), str):
        result["error"] = message(result["error"])
    return result


def dataset_link(ref: str) -> str | None:
    """The console path of a dataset version ``ZONE/NAME:VERSION`` (None if not one)."""
    try:
        parsed = DatasetRef.parse(ref)
    except InvalidReferenceError:
        return None
    if parsed.version is None:
        return f"/datasets/{parsed.zone}/{parsed.name}"
    return f"/datasets/{parsed.zone}/{parsed.name}/{parsed.version}"


def fragment_for(request: Request, blocks: Mapping[str, str]) -> str | None:
    """The template block an htmx request targets (its ``HX-Target`` element's id), if any."""
    return blocks.get(request.headers.get("hx-target", ""))


def head_rows(datasets: Datasets, info: DatasetInfo, rows: int = HEAD_ROWS) -> dict[str, Any]:
    """The Arrow schema and first ``rows`` rows of a version, read from its first part only."""
    import pyarrow.parquet as pq

    digests = datasets.parts(info)
    with datasets.local_part(digests[0]) as path, pq.ParquetFile(path) as parquet:
        schema = parquet.schema_arrow
        first = next(parquet.iter_batches(batch_size=rows), None)
    records = first.to_pylist() if first is not None else []
    fields = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]
    names = [f["name"] for f in fields]
    table = [[_cell(record.get(name)) for name in names] for record in records[:rows]]
    return {"fields": fields, "names": names, "rows": table, "parts": len(digests)}


def _source(info: DatasetInfo, admin: bool) -> str:
    return str(shown({"source": info.source}, admin)["source"])


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def _zone(zone: str) -> str:
    if zone not in ZONES:
        raise InvalidArgumentError(
            f"zone {zone[:40]!r} is not a zone: use one of {', '.join(ZONES)}"
        )
    return zone


def _name(name: str) -> str:
    if not NAME_RE.match(name):
        raise InvalidArgumentError(
            f"{name[:60]!r} is not a dataset name: letters, digits, '_', '.' or '-', starting "
            "with a letter or digit"
        )
    return name


# -- datasets -----------------------------------------------------------------------------


@router.get("/datasets")
def dataset_list(request: Request, session: Viewer, zone: str = "") -> Response:
    """The newest version of every dataset (of ``zone`` if given), by zone then name."""
    paging = Paging.from_request(request)
    datasets = console_state(request).server.datasets
    found, total = datasets.page(
        _zone(zone) if zone else None, offset=paging.offset, limit=paging.limit
    )
    admin = is_admin(session)
    context = {
        "datasets": [
            {"info": d, "source": shown({"source": d.source}, admin)["source"]} for d in found
        ],
        "total": total,
        "paging": paging,
        "zone": zone,
        "zones": ZONES,
        "admin": admin,
    }
    fragment = fragment_for(request, {"datasets-table": "table"})
    return page(request, "datasets.html", context, fragment=fragment)


@router.get("/datasets/{zone}/{name}")
def dataset_page(request: Request, zone: str, name: str, session: Viewer) -> Response:
    """Every version of one dataset, newest first, one page at a time."""
    paging = Paging.from_request(request)
    ref = f"{_zone(zone)}/{_name(name)}"
    datasets = console_state(request).server.datasets
    versions, total = datasets.versions_page(ref, offset=paging.offset, limit=paging.limit)
    if total == 0:
        raise NotFoundError(f"no dataset {ref}; the datasets page lists what the zones hold")
    admin = is_admin(session)
    context = {
        "zone": zone,
        "name": name,
        "versions": [{"info": v, "source": _source(v, admin)} for v in versions],
        "total": total,
        "paging": paging,
        "admin": admin,
    }
    fragment = fragment_for(request, {"versions-table": "table"})
    return page(request, "dataset.html", context, fragment=fragment)


@router.get("/datasets/{zone}/{name}/{version}")
def dataset_version(
    request: Request, zone: str, name: str, version: int, session: Viewer
) -> Response:
    """One version: schema, row count, lineage and its first rows."""
    if not 1 <= version <= _MAX_VERSION:
        raise InvalidArgumentError(f"version must be a number from 1 to {_MAX_VERSION}")
    ref = f"{_zone(zone)}/{_name(name)}:{version}"
    datasets = console_state(request).server.datasets
    try:
        info = datasets.get(ref)
    except NotFoundError:
        raise NotFoundError(
            f"dataset {zone}/{name} has no version {version}; its page lists the versions"
        ) from None
    admin = is_admin(session)
    job_id = info.source.removeprefix("batch:") if info.source.startswith("batch:") else None
    context = {
        "info": info,
        "record": shown(info.to_dict(), admin),
        "head": head_rows(datasets, info),
        "job_id": job_id,
        "admin": admin,
    }
    return page(request, "dataset_version.html", context)


# -- predictions --------------------------------------------------------------------------


@router.get("/predictions")
def predictions(request: Request, session: Viewer, model: str = "", before: str = "") -> Response:
    """Batch jobs (paged) and the online prediction log (newest first, keyset-paged)."""
    paging = Paging.from_request(request)
    if model and not NAME_RE.match(model):
        raise InvalidArgumentError(f"model={model[:60]!r} is not a model name")
    before_id = _before(before)
    state = console_state(request)
    jobs, total = state.server.predictions.jobs_page(
        model=model or None, offset=paging.offset, limit=paging.limit
    )
    entries = state.prediction_log.recent(LOG_PAGE + 1, before_id=before_id, model=model or None)
    more = len(entries) > LOG_PAGE
    entries = entries[:LOG_PAGE]
    admin = is_admin(session)
    context = {
        "jobs": [shown(job.to_dict(), admin) for job in jobs],
        "total": total,
        "paging": paging,
        "entries": entries,
        "older": entries[-1].id if more and entries else None,
        "dataset_path": lambda ref: dataset_link(ref) or "/datasets",
        "before": before_id,
        "model": model,
        "admin": admin,
    }
    fragment = fragment_for(request, {"jobs-table": "jobs", "log-table": "log"})
    return page(request, "predictions.html", context, fragment=fragment)


def _before(text: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise InvalidArgumentError(f"before={text[:40]!r} is not a whole number") from None
    if not 1 <= value <= 2**63 - 1:
        raise InvalidArgumentError(f"before={value} is out of range: use a log entry's id")
    return value


@router.get("/predictions/jobs/{job_id}")
def job_page(request: Request, job_id: str, session: Viewer) -> Response:
    """One batch job: progress, input and output, its first rows."""
    if len(job_id) > 40:
        raise InvalidArgumentError("a batch job id is at most 40 characters")
    server = console_state(request).server
    job = server.predictions.job(job_id)
    admin = is_admin(session)
    head = None
    output = None
    if job.dataset is not None and server.datasets.exists(job.dataset):
        output = server.datasets.get(job.dataset)
        head = head_rows(server.datasets, output)
    context = {
        "job": job,
        "record": shown(job.to_dict(), admin),
        "dataset_url": url_in(request, dataset_link(job.dataset) or "") if job.dataset else None,
        "output": output,
        "head": head,
        "admin": admin,
    }
    return page(
        request, "job.html", context, fragment=fragment_for(request, {"job-progress": "progress"})
    )
