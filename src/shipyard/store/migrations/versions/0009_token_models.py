"""API tokens limited to some models: ``api_tokens.models`` (NULL: every model).

Revision ID: 0009_token_models
Revises: 0008_prediction_log_request
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_token_models"
down_revision = "0008_prediction_log_request"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("models", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("api_tokens", "models")
