"""A run's id. The run's record (the run, each step, the run's end) is written by the runner
through :class:`~shipyard.datasets.run_records.Runs`."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by start time: ``YYYYmmddTHHMMSS-<6 hex>`` (UTC)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
