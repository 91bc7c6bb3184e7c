"""Pipeline runs as recorded: what ran, when, from which inputs, with what outcome.

A run's status is ``running``, ``succeeded``, ``failed`` or ``killed``; a step's is
``pending``, ``running``, ``succeeded``, ``cached`` (outputs reused from an earlier run
with the same cache key), ``failed``, ``skipped`` (an upstream step failed) or ``killed``.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from shipyard.core.exceptions import NotFoundError
from shipyard.store import Database
from shipyard.store.tables import Run, StepRun

PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"
CACHED = "cached"
FAILED = "failed"
SKIPPED = "skipped"
KILLED = "killed"

#: Step statuses whose outputs exist and may be read downstream.
DONE = (SUCCEEDED, CACHED)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


@dataclass(frozen=True)
class StepRunInfo:
    """One step of a run."""

    step: str
    status: str
    cache_key: str | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    error: str
    log_dir: str

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (None while unfinished)."""
        return _seconds(self.started_at, self.finished_at)

    def log_tail(self, stream: str = "stderr", lines: int = 20) -> list[str]:
        """The last ``lines`` lines the step wrote to ``stdout`` or ``stderr`` (if kept)."""
        if not self.log_dir:
            return []
        path = Path(self.log_dir) / f"{stream}.log"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``shipyard runs show --json``)."""
        return {
            "step": self.step,
            "status": self.status,
            "cache_key": self.cache_key,
            "attempts": self.attempts,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": self.duration,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "error": self.error,
            "log_dir": self.log_dir,
        }


@dataclass(frozen=True)
class RunInfo:
    """One run of a pipeline and (from :meth:`Runs.get`) its steps in run order."""

    id: str
    pipeline: str
    status: str
    trigger: str
    params: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    error: str
    created_by: str
    steps: list[StepRunInfo] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (None while running)."""
        return _seconds(self.started_at, self.finished_at)

    def count(self, status: str) -> int:
        """How many steps ended with ``status``."""
        return sum(1 for s in self.steps if s.status == status)

    def step(self, name: str) -> StepRunInfo:
        """The record of step ``name`` in this run."""
        for item in self.steps:
            if item.step == name:
                return item
        raise NotFoundError(
            f"run {self.id} has no step {name!r}; its steps are "
            f"{', '.join(s.step for s in self.steps) or 'none'}"
        )

    @property
    def failed_steps(self) -> list[StepRunInfo]:
        """The steps that failed or were killed, in run order."""
        return [s for s in self.steps if s.status in (FAILED, KILLED)]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``shipyard runs list/show --json``)."""
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "status": self.status,
            "trigger": self.trigger,
            "params": self.params,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": self.duration,
            "error": self.error,
            "created_by": self.created_by,
            "counts": {s: self.count(s) for s in (SUCCEEDED, CACHED, FAILED, SKIPPED, KILLED)},
            "steps": [s.to_dict() for s in self.steps],
        }


def step_info(row: StepRun) -> StepRunInfo:
    """The read-only view of a ``step_runs`` row."""
    return StepRunInfo(
        step=row.step,
        status=row.status,
        cache_key=row.cache_key,
        attempts=row.attempts,
        started_at=row.started_at,
        finished_at=row.finished_at,
        inputs=dict(row.inputs),
        outputs=dict(row.outputs),
        error=row.error,
        log_dir=row.log_dir,
    )


def run_info(row: Run, steps: builtins.list[StepRun]) -> RunInfo:
    """The read-only view of a ``runs`` row and its step rows (kept in the given order)."""
    return RunInfo(
        id=row.id,
        pipeline=row.pipeline,
        status=row.status,
        trigger=row.trigger,
        params=dict(row.params),
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        created_by=row.created_by,
        steps=[step_info(s) for s in steps],
    )


class Runs:
    """Read access to the pipeline runs of a project."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def list(self, pipeline: str | None = None, limit: int = 50) -> builtins.list[RunInfo]:
        """The newest ``limit`` runs (of ``pipeline`` if given), newest first, with their steps."""
        with self.database.session() as session:
            query = sa.select(Run).order_by(Run.started_at.desc(), Run.id.desc()).limit(limit)
            if pipeline is not None:
                query = query.where(Run.pipeline == pipeline)
            runs = builtins.list(session.scalars(query))
            by_run: dict[str, builtins.list[StepRun]] = {r.id: [] for r in runs}
            if runs:
                rows = session.scalars(
                    sa.select(StepRun)
                    .where(StepRun.run_id.in_(builtins.list(by_run)))
                    .order_by(StepRun.id)
                )
                for row in rows:
                    by_run[row.run_id].append(row)
            return [run_info(r, by_run[r.id]) for r in runs]

    def get(self, run_id: str) -> RunInfo:
        """One run and its steps; ``latest`` means the newest run."""
        with self.database.session() as session:
            if run_id == "latest":
                row = session.scalar(
                    sa.select(Run).order_by(Run.started_at.desc(), Run.id.desc()).limit(1)
                )
            else:
                row = session.get(Run, run_id)
            if row is None:
                raise NotFoundError(
                    f"no run {run_id!r}; 'shipyard runs list' shows the run ids "
                    "(e.g. 20250101T120000-a1b2c3)"
                )
            steps = session.scalars(
                sa.select(StepRun).where(StepRun.run_id == row.id).order_by(StepRun.id)
            )
            return run_info(row, builtins.list(steps))
