"""Find a logged request by its id without scanning the prediction log.

``GET /v1/predictions?source=online&key=REQUEST_ID`` and feedback labels look requests up
by ``request_id``; with only the (model, at) index that was a scan of every logged row.

Revision ID: 0008_prediction_log_request
Revises: 0007_run_heartbeat
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0008_prediction_log_request"
down_revision = "0007_run_heartbeat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_prediction_log_request_id", "prediction_log", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_prediction_log_request_id", table_name="prediction_log")
