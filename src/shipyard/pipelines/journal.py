"""Writing a run's record as it runs: the run, then each step, then the run's end.

The rows themselves (``runs`` and ``step_runs``) are written by
:class:`~shipyard.datasets.run_records.Runs`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipyard.datasets.run_records import Runs
from shipyard.store import Database


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
    Runs(database).create(
        run_id=run_id,
        pipeline=pipeline,
        steps=steps,
        params=params,
        trigger=trigger,
        actor=actor,
        log_root=log_root,
    )


def update_step(database: Database, run_id: str, step: str, **values: Any) -> None:
    """Set columns of one step's row."""
    Runs(database).update_step(run_id, step, **values)


def finish_run(database: Database, run_id: str, status: str, error: str = "") -> None:
    """Record the end of a run."""
    Runs(database).finish(run_id, status, error)
