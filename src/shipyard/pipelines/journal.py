"""Writing a run's record: the ``runs`` row and one ``step_runs`` row per step."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from shipyard.core.clock import utcnow
from shipyard.pipelines.runs import PENDING, RUNNING
from shipyard.store import Database
from shipyard.store.tables import Run, StepRun


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by start time: ``YYYYmmddTHHMMSS-<6 hex>`` (UTC)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def create_run(
    database: Database,
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
    with database.session() as session:
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


def update_step(database: Database, run_id: str, step: str, **values: Any) -> None:
    """Set columns of one step's row."""
    with database.session() as session:
        session.execute(
            sa.update(StepRun)
            .where(StepRun.run_id == run_id, StepRun.step == step)
            .values(**values)
        )


def finish_run(database: Database, run_id: str, status: str, error: str = "") -> None:
    """Record the end of a run."""
    with database.session() as session:
        session.execute(
            sa.update(Run)
            .where(Run.id == run_id)
            .values(status=status, error=error, finished_at=utcnow())
        )
