"""Pipeline run records: the ``runs``, ``step_runs`` and ``schedule_state`` tables.

:class:`Runs` is the one reader and writer of ``runs`` and ``step_runs`` (what ran, when,
from which inputs, with what outcome); :class:`ScheduleStates` the one reader and writer of
``schedule_state`` (each scheduled pipeline's last and next fire time and its lock). The
engine that runs pipelines, caches steps and fires schedules is :mod:`shipyard.pipelines`.

A run's status is ``running``, ``succeeded``, ``failed`` or ``killed``; a step's is
``pending``, ``running``, ``succeeded``, ``cached`` (outputs reused from an earlier run
with the same cache key), ``failed``, ``skipped`` (an upstream step failed) or ``killed``.

A schedule's lock is a lease (owner and expiry) taken with one conditional ``UPDATE``: two
schedulers, in two processes, on SQLite or PostgreSQL, never hold one pipeline at once, and
the lease of a scheduler that died expires and is taken over.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shipyard.core.clock import utcnow
from shipyard.core.exceptions import NotFoundError
from shipyard.store import Database
from shipyard.store.tables import Run, ScheduleState, StepRun

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
            by_run: dict[str, builtins.list[StepRun]] = {r.id: [] for r in runs}
            if runs:
                rows = session.scalars(
                    sa.select(StepRun)
                    .where(StepRun.run_id.in_(builtins.list(by_run)))
                    .order_by(StepRun.id)
                )
                for row in rows:
                    by_run[row.run_id].append(row)
            return [_run_info(r, by_run[r.id]) for r in runs]

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
    ) -> None:
        """Record a run as ``running`` and each of its steps as ``pending``, in one transaction."""
        with self.database.session() as session:
            session.add(
                Run(
                    id=run_id,
                    pipeline=pipeline,
                    status=RUNNING,
                    trigger=trigger,
                    params=params,
                    started_at=utcnow(),
                    finished_at=None,
                    error="",
                    created_by=actor,
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

    def update_step(self, run_id: str, step: str, **values: Any) -> None:
        """Set columns of one step's row."""
        with self.database.session() as session:
            session.execute(
                sa.update(StepRun)
                .where(StepRun.run_id == run_id, StepRun.step == step)
                .values(**values)
            )

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


@dataclass(frozen=True)
class Claim:
    """A pipeline's lock, taken: the fire times to launch and whose expired lease it took."""

    times: builtins.list[datetime]
    taken_from: str | None


class ScheduleStates:
    """Each scheduled pipeline's fire times and lock (the ``schedule_state`` table).

    Every write that needs the lock is one conditional ``UPDATE`` that only changes rows
    whose lock ``owner`` holds, so a scheduler that lost its lease changes nothing.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    def claim(
        self,
        pipeline: str,
        *,
        owner: str,
        now: datetime,
        expires_at: datetime,
        next_fire_at: datetime,
        due: Callable[[datetime], builtins.list[datetime]],
    ) -> Claim | None:
        """Take ``pipeline``'s lock for ``owner`` until ``expires_at`` if it is due and free.

        A pipeline seen for the first time gets ``next_fire_at`` (the next fire time after
        ``now``) as its first fire time. When the stored next fire time has come,
        ``due(stored)`` says which fire times to launch; none (all missed and skipped) moves
        the next fire time to ``next_fire_at`` without taking the lock. Returns the claim,
        or None when the pipeline is not due, is locked by a live lease, or another
        scheduler moved it first.
        """
        # the dialects' own INSERTs are imported here: listing runs needs neither
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        first = {"pipeline": pipeline, "next_fire_at": next_fire_at}
        insert = pg_insert if self.database.backend == "postgresql" else sqlite_insert
        with self.database.session() as session:
            session.execute(insert(ScheduleState).values(**first).on_conflict_do_nothing())
            state = session.get(ScheduleState, pipeline)
            if state is None or state.next_fire_at is None or state.next_fire_at > now:
                return None
            times = due(state.next_fire_at)
            values: dict[str, Any] = {"lock_owner": owner, "lock_expires_at": expires_at}
            if not times:  # everything missed and skipped: move on without running
                values = {"next_fire_at": next_fire_at}
            # The guard on next_fire_at stops a scheduler that read the state before another
            # finished the same fire (and released the lock) from firing it a second time.
            claimed = _update(
                session,
                [
                    ScheduleState.pipeline == pipeline,
                    ScheduleState.next_fire_at == state.next_fire_at,
                    sa.or_(
                        ScheduleState.lock_owner.is_(None),
                        ScheduleState.lock_owner == owner,
                        ScheduleState.lock_expires_at < now,
                    ),
                ],
                values,
            )
            if claimed != 1 or not times:
                return None
            taken_from = state.lock_owner if state.lock_owner not in (None, owner) else None
            return Claim(times, taken_from)

    def advance(
        self, pipeline: str, *, owner: str, last_fire_at: datetime, next_fire_at: datetime
    ) -> bool:
        """Record ``last_fire_at`` as fired and ``next_fire_at`` as next; False without the lock."""
        values = {"last_fire_at": last_fire_at, "next_fire_at": next_fire_at}
        return self._update_owned(owner, [pipeline], values) == 1

    def renew(self, pipelines: Sequence[str], *, owner: str, expires_at: datetime) -> int:
        """Extend ``owner``'s leases of ``pipelines`` to ``expires_at``; return how many."""
        return self._update_owned(owner, pipelines, {"lock_expires_at": expires_at})

    def release(self, owner: str, pipelines: Sequence[str] | None = None) -> int:
        """Release ``owner``'s locks of ``pipelines`` (default: all it holds); return how many."""
        return self._update_owned(owner, pipelines, {"lock_owner": None, "lock_expires_at": None})

    def _update_owned(
        self, owner: str, pipelines: Sequence[str] | None, values: Mapping[str, Any]
    ) -> int:
        """Update the rows of ``pipelines`` (default: all) whose lock ``owner`` holds."""
        where = [ScheduleState.lock_owner == owner]
        if pipelines is not None:
            where.append(ScheduleState.pipeline.in_(builtins.list(pipelines)))
        with self.database.session() as session:
            return _update(session, where, values)


def _update(
    session: Session, where: Sequence[sa.ColumnElement[bool]], values: Mapping[str, Any]
) -> int:
    """``UPDATE schedule_state SET values WHERE where``; return how many rows changed."""
    statement = sa.update(ScheduleState).where(*where).values(**values)
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast("sa.CursorResult[Any]", result).rowcount)
