"""Indexes for the console's pages: runs newest first (optionally by pipeline or status),
and a monitoring result's values.

``/ui/runs`` lists runs newest first, filtered by pipeline or status; without an index on
``started_at`` that was a scan and a sort of every run. ``monitor_values`` had no index on
``result_id``, so the newest report's values (the ``/metrics`` gauges, a report's page) and
pruning scanned every value.

Revision ID: 0010_console_indexes
Revises: 0009_token_models
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0010_console_indexes"
down_revision = "0009_token_models"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_started_at", "runs", ["started_at", "id"])
    op.create_index("ix_runs_pipeline_started_at", "runs", ["pipeline", "started_at"])
    op.create_index("ix_runs_status_started_at", "runs", ["status", "started_at"])
    op.create_index("ix_monitor_values_result_id", "monitor_values", ["result_id"])


def downgrade() -> None:
    op.drop_index("ix_monitor_values_result_id", table_name="monitor_values")
    op.drop_index("ix_runs_status_started_at", table_name="runs")
    op.drop_index("ix_runs_pipeline_started_at", table_name="runs")
    op.drop_index("ix_runs_started_at", table_name="runs")
