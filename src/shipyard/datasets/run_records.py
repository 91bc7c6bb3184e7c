"""Pipeline run records: the ``runs`` and ``step_runs`` tables.

:class:`Runs` is the one reader and writer of ``runs`` and ``step_runs`` (what ran, when,
from which inputs, with what outcome). Schedules' fire times and locks are kept by
:mod:`shipyard.datasets.schedule_states` (re-exported here). The engine that runs
pipelines, caches steps and fires schedules is :mod:`shipyard.pipelines`.

A run's status is ``running``, ``succeeded``, ``failed`` or ``killed``; a step's is
``pending``, ``running``, ``succeeded``, ``cached`` (outputs reused from an earlier run
with the same cache key), ``failed``, ``skipped`` (an upstream step failed) or ``killed``.

A run's process writes its heartbeat (``runs.heartbeat_at``) every few seconds while it
runs; :meth:`Runs.fail_stale` marks a ``running`` run whose heartbeat is too old ``failed``
(its process was killed or its machine went away), so no run stays ``running`` forever.

A scheduled run is recorded in the transaction that moves its schedule past the fire time
(:class:`ScheduledFire`), so each fire time is launched once.
"""

from __future__ import annotations

import builtins
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import NotFoundError
from shipyard.datasets.schedule_states import (
    Claim,
    LockLostError,
    ScheduledFire,
    ScheduleStates,
    record_fire,
)
from shipyard.store import Database
from shipyard.store.tables import Run, StepRun

__all__ = [
    "CACHED",
    "DONE",
    "FAILED",
    "KILLED",
    "PENDING",
    "RUNNING",
    "SKIPPED",
    "SUCCEEDED",
    "Claim",
    "LockLostError",
    "RunInfo",
    "Runs",
    "ScheduleStates",
    "ScheduledFire",
    "StepRunInfo",
]

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
    heartbeat_at: datetime | None = None
    host: str = ""
    pid: int | None = None
    scheduled_for: datetime | None = None

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
            "heartbeat_at": _iso(self.heartbeat_at),
            "host": self.host,
            "pid": self.pid,
            "scheduled_for": _iso(self.scheduled_for),
            "counts": {s: self.count(s) for s in (SUCCEEDED, CACHED, FAILED, SKIPPED, KILLED)},
            "steps": [s.to_dict() for s in self.steps],
        }


def _step_info(row: StepRun) -> StepRunInfo:
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


def _stale_reason(row: Run) -> str:
    """Why a run without a recent heartbeat was marked failed."""
    seen = row.heartbeat_at or row.started_at
    where = f" (pid {row.pid} on {row.host})" if row.pid is not None and row.host else ""
    return (
        f"the process running it{where} stopped without finishing (no heartbeat since "
        f"{seen:%Y-%m-%d %H:%M:%S} UTC); run the pipeline again"
    )


def _with_steps(session: Session, runs: Sequence[Run]) -> builtins.list[RunInfo]:
    """``runs`` with their steps, read in one query."""
    by_run: dict[str, builtins.list[StepRun]] = {r.id: [] for r in runs}
    if runs:
        rows = session.scalars(
            sa.select(StepRun).where(StepRun.run_id.in_(builtins.list(by_run))).order_by(StepRun.id)
        )
        for row in rows:
            by_run[row.run_id].append(row)
    return [_run_info(r, by_run[r.id]) for r in runs]


def _run_info(row: Run, steps: builtins.list[StepRun]) -> RunInfo:
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
        steps=[_step_info(s) for s in steps],
        heartbeat_at=row.heartbeat_at,
        host=row.host or "",
        pid=row.pid,
        scheduled_for=row.scheduled_for,
    )


class Runs:
    """The pipeline runs of a project and their steps (``runs`` and ``step_runs``)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def list(self, pipeline: str | None = None, limit: int = 50) -> builtins.list[RunInfo]:
        """The newest ``limit`` runs (of ``pipeline`` if given), newest first, with their steps."""
        with self.database.session() as session:
            query = sa.select(Run).order_by(Run.started_at.desc(), Run.id.desc()).limit(limit)
            if pipeline is not None:
                query = query.where(Run.pipeline == pipeline)
            runs = builtins.list(session.scalars(query))
            return _with_steps(session, runs)

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
            return _run_info(row, builtins.list(steps))

    def page(
        self,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[builtins.list[RunInfo], int]:
        """One page of runs (newest first, with their steps) and how many pass the filters.

        The console's run list: ``LIMIT``/``OFFSET`` over ``started_at`` and one query for
        the page's steps, so a project of 10,000 runs reads as fast as one of 10.
        """
        where = []
        if pipeline:
            where.append(Run.pipeline == pipeline)
        if status:
            where.append(Run.status == status)
        with self.database.session() as session:
            total = session.scalar(sa.select(sa.func.count()).select_from(Run).where(*where))
            runs = builtins.list(
                session.scalars(
                    sa.select(Run)
                    .where(*where)
                    .order_by(Run.started_at.desc(), Run.id.desc())
                    .offset(offset)
                    .limit(limit)
                )
            )
            return _with_steps(session, runs), int(total or 0)

    def pipelines(self) -> builtins.list[str]:
        """The names of the pipelines that have run, sorted (a filter's choices)."""
        with self.database.session() as session:
            query = sa.select(Run.pipeline).distinct().order_by(Run.pipeline)
            return builtins.list(session.scalars(query))

    # -- the journal: one run's record as it runs --------------------------------------

    def create(
        self,
        *,
        run_id: str,
        pipeline: str,
        steps: Iterable[str],
        params: dict[str, Any],
        trigger: str,
        actor: str,
        log_root: Path,
        fire: ScheduledFire | None = None,
    ) -> None:
        """Record a run as ``running`` and each of its steps as ``pending``, in one transaction.

        The run's first heartbeat, host and pid are this process's. Given ``fire``, the
        same transaction records it on the schedule (see :class:`ScheduledFire`); without
        the schedule's lock nothing is recorded and :class:`LockLostError` is raised.
        """
        now = utcnow()
        with self.database.session() as session:
            session.add(
                Run(
                    id=run_id,
                    pipeline=pipeline,
                    status=RUNNING,
                    trigger=trigger,
                    params=params,
                    started_at=now,
                    finished_at=None,
                    error="",
                    created_by=actor,
                    heartbeat_at=now,
                    host=socket.gethostname()[:128],
                    pid=os.getpid(),
                    scheduled_for=fire.fire_time if fire is not None else None,
                )
            )
            session.flush()  # the step rows refer to the run
            for name in steps:
                session.add(
                    StepRun(
                        run_id=run_id,
                        step=name,
                        status=PENDING,
                        cache_key=None,
                        attempts=0,
                        inputs={},
                        outputs={},
                        error="",
                        log_dir=str(log_root / name),
                    )
                )
            if fire is not None and not record_fire(session, fire):
                raise LockLostError(
                    f"the scheduler {fire.owner} no longer holds the lock of {fire.pipeline!r} "
                    f"(another scheduler took it over); it does not launch {fire.fire_time}"
                )

    def update_step(
        self, run_id: str, step: str, *, session: Session | None = None, **values: Any
    ) -> None:
        """Set columns of one step's row (inside ``session``'s transaction if given)."""
        statement = (
            sa.update(StepRun)
            .where(StepRun.run_id == run_id, StepRun.step == step)
            .values(**values)
        )
        if session is not None:
            session.execute(statement)
            return
        with self.database.session() as own:
            own.execute(statement)

    def beat(self, run_id: str) -> bool:
        """Record that the process running ``run_id`` is alive; False once the run has ended."""
        with self.database.session() as session:
            result = session.execute(
                sa.update(Run)
                .where(Run.id == run_id, Run.status == RUNNING)
                .values(heartbeat_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            return int(cast("sa.CursorResult[Any]", result).rowcount) == 1

    def fail_stale(
        self, older_than: timedelta, *, now: datetime | None = None
    ) -> builtins.list[str]:
        """Mark ``failed`` every ``running`` run without a heartbeat for ``older_than``.

        Such a run lost its process (SIGKILL, out of memory, the machine went away): its
        running steps become ``killed``, its pending ones ``skipped``, and the error says
        when it was last seen. Returns the ids of the runs marked. A heartbeat that lands
        meanwhile wins (the update is conditional), so a live run is never marked.
        """
        now = utcnow() if now is None else now
        cutoff = now - older_than
        stale = sa.and_(
            Run.status == RUNNING,
            sa.or_(
                Run.heartbeat_at < cutoff,
                sa.and_(Run.heartbeat_at.is_(None), Run.started_at < cutoff),
            ),
        )
        marked: builtins.list[str] = []
        with self.database.session() as session:
            for row in builtins.list(session.scalars(sa.select(Run).where(stale))):
                reason = _stale_reason(row)
                result = session.execute(
                    sa.update(Run)
                    .where(Run.id == row.id, stale)
                    .values(status=FAILED, finished_at=now, error=reason)
                    .execution_options(synchronize_session=False)
                )
                if int(cast("sa.CursorResult[Any]", result).rowcount) != 1:
                    continue
                for before, after in ((RUNNING, KILLED), (PENDING, SKIPPED)):
                    session.execute(
                        sa.update(StepRun)
                        .where(StepRun.run_id == row.id, StepRun.status == before)
                        .values(status=after, finished_at=now, error=reason)
                        .execution_options(synchronize_session=False)
                    )
                marked.append(row.id)
        return marked

    def finish(self, run_id: str, status: str, error: str = "") -> None:
        """Record the end of a run."""
        with self.database.session() as session:
            session.execute(
                sa.update(Run)
                .where(Run.id == run_id)
                .values(status=status, error=error, finished_at=utcnow())
            )

    # -- the step cache ----------------------------------------------------------------

    def cached_outputs(self, cache_key: str, limit: int = 5) -> builtins.list[dict[str, Any]]:
        """The outputs of the newest ``limit`` step runs done under ``cache_key``, newest first."""
        with self.database.session() as session:
            rows = session.scalars(
                sa.select(StepRun)
                .where(StepRun.cache_key == cache_key, StepRun.status.in_(DONE))
                .order_by(StepRun.finished_at.desc(), StepRun.id.desc())
                .limit(limit)
            )
            return [dict(row.outputs) for row in rows]

    def recent_outputs(
        self, limit: int, *, pipeline: str | None = None, step: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The outputs of the newest ``limit`` done step runs, newest first.

        Given ``step``, only that step's runs in pipeline ``pipeline``; without it, every
        done step run of every pipeline.
        """
        query = (
            sa.select(StepRun)
            .where(StepRun.status.in_(DONE))
            .order_by(StepRun.finished_at.desc(), StepRun.id.desc())
            .limit(limit)
        )
        if step is not None:
            query = query.join(Run, Run.id == StepRun.run_id).where(
                Run.pipeline == pipeline, StepRun.step == step
            )
        with self.database.session() as session:
            return [dict(row.outputs) for row in session.scalars(query)]
