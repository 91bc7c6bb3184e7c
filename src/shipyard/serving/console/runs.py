"""Runs: every pipeline run (filtered, paged) and one run's step graph, timeline, logs and data.

- ``/ui/runs?pipeline=&status=&offset=&limit=`` — the runs, newest first, one page at a time
  (:meth:`~shipyard.datasets.run_records.Runs.page`: ``LIMIT``/``OFFSET`` and a count);
- ``/ui/runs/{run_id}`` — a run: its step graph (each step after the steps whose outputs it
  read, as the run recorded them), its timeline (cached / ran / retried / failed bars on the
  run's own time scale), each step's datasets in and out and the tail of its logs;
- ``/ui/runs/{run_id}/steps/{step}/log?stream=stderr|stdout`` — one step's log, the last
  :data:`LOG_MAX_BYTES` of it at most.

Parameters, host names, process ids and who started a run are shown whole to an admin
session only; anyone else sees paths cut to their last part (as the read APIs do).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.datasets.run_records import (
    CACHED,
    FAILED,
    KILLED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    RunInfo,
    StepRunInfo,
)
from shipyard.serving.console.data import dataset_link, fragment_for, is_admin, redacted_text
from shipyard.serving.console.deps import reader
from shipyard.serving.console.render import Paging, page
from shipyard.serving.console.session import Session
from shipyard.serving.console.state import console_state

router = APIRouter()

#: A run's statuses, the choices of the list's filter.
RUN_STATUSES = (RUNNING, SUCCEEDED, FAILED, KILLED)
#: Lines of each log shown on the run page, and the bytes read from its end to find them.
TAIL_LINES = 30
TAIL_BYTES = 16 * 1024
#: The most of a log the log page shows (its end).
LOG_MAX_BYTES = 2 * 1024 * 1024
STREAMS = ("stderr", "stdout")

Viewer = Annotated[Session | None, Depends(reader)]


@router.get("/runs")
def run_list(request: Request, session: Viewer, pipeline: str = "", status: str = "") -> Response:
    """The runs, newest first, filtered by pipeline and status, one page at a time."""
    paging = Paging.from_request(request)
    if status and status not in RUN_STATUSES:
        raise InvalidArgumentError(
            f"status={status[:40]!r} is not a run status: use one of {', '.join(RUN_STATUSES)}"
        )
    if len(pipeline) > 128:
        raise InvalidArgumentError("pipeline= is longer than a pipeline name (128 characters)")
    runs = console_state(request).runs
    found, total = runs.page(
        pipeline=pipeline or None, status=status or None, offset=paging.offset, limit=paging.limit
    )
    context = {
        "runs": [_summary(run) for run in found],
        "total": total,
        "paging": paging,
        "pipelines": runs.pipelines(),
        "statuses": RUN_STATUSES,
        "filters": {"pipeline": pipeline, "status": status},
        "admin": is_admin(session),
    }
    return page(
        request, "runs.html", context, fragment=fragment_for(request, {"runs-table": "table"})
    )


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, session: Viewer) -> Response:
    """One run: step graph, timeline, datasets in and out, log tails."""
    run = console_state(request).runs.get(_checked_id(run_id))
    admin = is_admin(session)
    steps = [_step_view(step, admin) for step in run.steps]
    context = {
        "run": run,
        "steps": steps,
        "graph": step_graph(run.steps),
        "timeline": timeline(run),
        "params": redacted_text(json.dumps(run.params, indent=2, sort_keys=True), admin),
        "error": redacted_text(run.error, admin),
        "admin": admin,
    }
    return page(request, "run.html", context)


@router.get("/runs/{run_id}/steps/{step}/log")
def step_log(
    request: Request, run_id: str, step: str, session: Viewer, stream: str = "stderr"
) -> Response:
    """One step's log (``stream``: stderr or stdout), its last :data:`LOG_MAX_BYTES` at most."""
    if stream not in STREAMS:
        raise InvalidArgumentError(f"stream={stream[:40]!r} is not a log: use stderr or stdout")
    run = console_state(request).runs.get(_checked_id(run_id))
    info = run.step(step)
    log = read_log(info, stream, LOG_MAX_BYTES)
    context = {
        "run": run,
        "step": info,
        "stream": stream,
        "streams": STREAMS,
        "log": log,
        "admin": is_admin(session),
    }
    return page(request, "step_log.html", context)


def _checked_id(run_id: str) -> str:
    if len(run_id) > 64:
        raise InvalidArgumentError(
            "a run id is at most 40 characters (e.g. 20250101T120000-a1b2c3)"
        )
    return run_id


# -- what the pages show ------------------------------------------------------------------


def outcome(step: StepRunInfo) -> str:
    """How a step went, for people: cached, ran, retried, failed, skipped, killed, …"""
    if step.status == CACHED:
        return "cached"
    if step.status == SUCCEEDED:
        return "retried" if step.attempts > 1 else "ran"
    return step.status


def _summary(run: RunInfo) -> dict[str, Any]:
    return {
        "run": run,
        "ran": run.count(SUCCEEDED),
        "cached": run.count(CACHED),
        "failed": run.count(FAILED) + run.count(KILLED),
        "skipped": run.count(SKIPPED),
        "retried": sum(1 for s in run.steps if s.attempts > 1),
    }


@dataclass(frozen=True)
class LogText:
    """The end of one log file: its text, its size, whether it was cut, where it is."""

    text: str
    size: int
    cut: bool
    path: str
    found: bool


def read_log(step: StepRunInfo, stream: str, max_bytes: int) -> LogText:
    """The last ``max_bytes`` of a step's ``stream`` log (whole lines), never more in memory."""
    if not step.log_dir:
        return LogText("", 0, False, "", False)
    path = Path(step.log_dir) / f"{stream}.log"
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = max(0, size - max_bytes)
            handle.seek(start)
            data = handle.read(max_bytes)
    except OSError:
        return LogText("", 0, False, str(path), False)
    if start > 0:  # start at a whole line
        newline = data.find(b"\n")
        data = data[newline + 1 :] if 0 <= newline < len(data) - 1 else data
    return LogText(data.decode("utf-8", errors="replace"), size, start > 0, str(path), True)


def _step_view(step: StepRunInfo, admin: bool) -> dict[str, Any]:
    tails = {}
    for stream in STREAMS:
        log = read_log(step, stream, TAIL_BYTES)
        lines = log.text.splitlines()
        tails[stream] = {
            "lines": lines[-TAIL_LINES:],
            "more": log.cut or len(lines) > TAIL_LINES,
            "found": log.found,
            "size": log.size,
        }
    return {
        "step": step,
        "outcome": outcome(step),
        "inputs": [_object(key, value) for key, value in sorted(step.inputs.items())],
        "outputs": [_object(key, value) for key, value in sorted(step.outputs.items())],
        "error": redacted_text(step.error, admin),
        "tails": tails,
    }


def _object(key: str, value: Any) -> dict[str, Any]:
    """One input or output of a step: a dataset version (with its page) or an artifact."""
    entry = value if isinstance(value, dict) else {}
    ref = entry.get("ref") if entry.get("kind") == "dataset" else None
    digest = str(entry.get("digest") or "")
    return {
        "key": key,
        "kind": str(entry.get("kind") or "object"),
        "ref": ref,
        "link": dataset_link(ref) if isinstance(ref, str) else None,
        "digest": digest[:12],
    }


def step_graph(steps: list[StepRunInfo]) -> dict[str, Any]:
    """The steps as a graph: each after the steps whose outputs it read, laid out in levels.

    The run records what each step read and wrote; a step that read nothing yet (pending,
    skipped) is placed after the step before it in run order. Positions are for an SVG:
    one column a level, one row a step of that level.
    """
    producer: dict[str, str] = {}
    depends: dict[str, list[str]] = {}
    level: dict[str, int] = {}
    previous: str | None = None
    for step in steps:
        parents = sorted(
            {producer[key] for key in step.inputs if key in producer and producer[key] != step.step}
        )
        if (
            not parents
            and not step.inputs
            and previous is not None
            and step.status
            in (
                PENDING,
                SKIPPED,
                KILLED,
                RUNNING,
            )
        ):
            parents = [previous]
        depends[step.step] = parents
        level[step.step] = 1 + max((level[p] for p in parents), default=-1)
        for key in step.outputs:
            producer[key] = step.step
        previous = step.step
    rows: dict[int, int] = {}
    nodes: list[dict[str, Any]] = []
    width, height, gap_x, gap_y = 150, 44, 40, 18
    for step in steps:
        column = level[step.step]
        row = rows.get(column, 0)
        rows[column] = row + 1
        nodes.append(
            {
                "name": step.step,
                "outcome": outcome(step),
                "x": 10 + column * (width + gap_x),
                "y": 10 + row * (height + gap_y),
                "after": depends[step.step],
            }
        )
    where = {n["name"]: n for n in nodes}
    above = _ancestors(depends)
    edges = [
        {
            "from": parent,
            "to": node["name"],
            "x1": where[parent]["x"] + width,
            "y1": where[parent]["y"] + height // 2,
            "x2": node["x"],
            "y2": node["y"] + height // 2,
        }
        for node in nodes
        for parent in node["after"]
        # an edge implied by a longer path is left out of the drawing (not of "after")
        if not any(parent in above[other] for other in node["after"] if other != parent)
    ]
    columns = 1 + max(level.values(), default=0)
    deepest = max(rows.values(), default=1)
    return {
        "nodes": nodes,
        "edges": edges,
        "node_width": width,
        "node_height": height,
        "width": 20 + columns * (width + gap_x) - gap_x,
        "height": 20 + deepest * (height + gap_y) - gap_y,
    }


def _ancestors(depends: dict[str, list[str]]) -> dict[str, set[str]]:
    """Every step each step comes after, directly or not (``depends`` is in run order)."""
    found: dict[str, set[str]] = {}
    for name, parents in depends.items():
        found[name] = set(parents).union(*(found.get(p, set()) for p in parents))
    return found


def timeline(run: RunInfo) -> dict[str, Any]:
    """Each step's start and end as shares of the run's duration (CSS bar offsets)."""
    start = _aware(run.started_at)
    ends = [_aware(s.finished_at) for s in run.steps if s.finished_at is not None]
    end = _aware(run.finished_at) if run.finished_at else max(ends, default=datetime.now(UTC))
    total = max((end - start).total_seconds(), 0.001)
    bars = []
    for step in run.steps:
        if step.started_at is None:
            bars.append({"step": step, "outcome": outcome(step), "left": 0.0, "width": 0.0})
            continue
        begin = (_aware(step.started_at) - start).total_seconds()
        finish = _aware(step.finished_at) if step.finished_at else end
        length = max((finish - _aware(step.started_at)).total_seconds(), 0.0)
        left = min(max(begin / total * 100, 0.0), 100.0)
        bars.append(
            {
                "step": step,
                "outcome": outcome(step),
                "left": round(left, 2),
                "width": round(max(min(length / total * 100, 100.0 - left), 0.4), 2),
            }
        )
    return {"seconds": total, "bars": bars}


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
