"""Schedule state: each scheduled pipeline's fire times and lock (the ``schedule_state`` table).

:class:`ScheduleStates` is the one reader and writer of ``schedule_state``; the scheduler
that uses it is :mod:`shipyard.pipelines.schedule`. A schedule's lock is a lease (owner and
expiry) taken with one conditional ``UPDATE``: two schedulers, in two processes, on SQLite
or PostgreSQL, never hold one pipeline at once, and the lease of a scheduler that died
expires and is taken over.

A scheduled run's record and the schedule's move past its fire time are one transaction
(:class:`ScheduledFire`, recorded by ``Runs.create``), so a scheduler killed at any point
launches each fire time once: before that transaction nothing was recorded and the fire
time is launched again, after it the run exists and the fire time is not launched again.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shipyard.core.exceptions import ConflictError
from shipyard.store import Database
from shipyard.store.tables import ScheduleState


class LockLostError(ConflictError):
    """A scheduler tried to record a fire of a pipeline whose lock it no longer holds."""


@dataclass(frozen=True)
class ScheduledFire:
    """One fire time of a schedule, launched under ``owner``'s lock.

    Recording it (with the run it launches, or alone) sets the schedule's last fire time to
    ``fire_time`` and its next to ``next_fire_at``; only while ``owner`` holds the lock.
    """

    pipeline: str
    owner: str
    fire_time: datetime
    next_fire_at: datetime


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
        gone: Callable[[str], bool] | None = None,
    ) -> Claim | None:
        """Take ``pipeline``'s lock for ``owner`` until ``expires_at`` if it is due and free.

        A lock is free when nobody holds it, its lease expired, or ``gone(holder)`` says
        the process holding it no longer exists (a scheduler killed on this host).

        A pipeline seen for the first time gets ``next_fire_at`` (the next fire time after
        ``now``) as its first fire time. When the stored next fire time has come,
        ``due(stored)`` says which fire times to launch; none (all missed and skipped) moves
        the next fire time to ``next_fire_at`` without taking the lock. Returns the claim,
        or None when the pipeline is not due, is locked by a live lease, or another
        scheduler moved it first.
        """
        first = {"pipeline": pipeline, "next_fire_at": next_fire_at}
        with self.database.session() as session:
            session.execute(
                self.database.upsert(ScheduleState).values(**first).on_conflict_do_nothing()
            )
            state = session.get(ScheduleState, pipeline)
            if state is None or state.next_fire_at is None or state.next_fire_at > now:
                return None
            times = due(state.next_fire_at)
            values: dict[str, Any] = {"lock_owner": owner, "lock_expires_at": expires_at}
            if not times:  # everything missed and skipped: move on without running
                values = {"next_fire_at": next_fire_at}
            free = [
                ScheduleState.lock_owner.is_(None),
                ScheduleState.lock_owner == owner,
                ScheduleState.lock_expires_at < now,
            ]
            holder = state.lock_owner
            if holder is not None and holder != owner and gone is not None and gone(holder):
                free.append(ScheduleState.lock_owner == holder)
            # The guard on next_fire_at stops a scheduler that read the state before another
            # finished the same fire (and released the lock) from firing it a second time.
            claimed = _update(
                session,
                [
                    ScheduleState.pipeline == pipeline,
                    ScheduleState.next_fire_at == state.next_fire_at,
                    sa.or_(*free),
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

    def record(self, fire: ScheduledFire) -> bool:
        """Record ``fire`` alone (a launch that keeps no run); False without the lock."""
        with self.database.session() as session:
            return record_fire(session, fire)

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


def record_fire(session: Session, fire: ScheduledFire) -> bool:
    """In ``session``: move ``fire``'s schedule past it, if ``fire.owner`` holds the lock."""
    where = [ScheduleState.pipeline == fire.pipeline, ScheduleState.lock_owner == fire.owner]
    values = {"last_fire_at": fire.fire_time, "next_fire_at": fire.next_fire_at}
    return _update(session, where, values) == 1
