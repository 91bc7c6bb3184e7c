"""Run heartbeats: a run's process, its last sign of life, and the fire time it was launched for.

``runs.heartbeat_at`` is written by the running process every few seconds; a ``running``
run whose heartbeat is too old lost its process and is marked ``failed``. ``host`` and
``pid`` say where it ran; ``scheduled_for`` is the cron fire time of a scheduled run
(recorded in the transaction that advances the schedule, so a fire is launched once).
The ``shipyard_runs`` view (0006) reads none of these columns.

Revision ID: 0007_run_heartbeat
Revises: 0006_views
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shipyard.store.tables import UTCDateTime

revision = "0007_run_heartbeat"
down_revision = "0006_views"
branch_labels = None
depends_on = None

_COLUMNS = ("heartbeat_at", "host", "pid", "scheduled_for")


def upgrade() -> None:
    # Plain ADD COLUMN (no table copy on SQLite): the shipyard_runs view keeps working.
    op.add_column("runs", sa.Column("heartbeat_at", UTCDateTime(), nullable=True))
    op.add_column("runs", sa.Column("host", sa.String(128), nullable=False, server_default=""))
    op.add_column("runs", sa.Column("pid", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("scheduled_for", UTCDateTime(), nullable=True))
    op.create_index("ix_runs_status", "runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_runs_status", table_name="runs")
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch copy of the table: the
    # shipyard_runs view and step_runs' foreign key refer to runs.
    for column in reversed(_COLUMNS):
        op.drop_column("runs", column)
