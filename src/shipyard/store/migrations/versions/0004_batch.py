"""Batch scoring jobs (the predictions store's index) and multi-part dataset versions.

Revision ID: 0004_batch
Revises: 0003_serving
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shipyard.store.tables import UTCDateTime

revision = "0004_batch"
down_revision = "0003_serving"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_versions") as batch:
        batch.add_column(sa.Column("layout", sa.String(16), nullable=False, server_default="file"))
    op.create_table(
        "batch_jobs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(256), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("engine", sa.String(16), nullable=False),
        sa.Column("chunk_rows", sa.Integer(), nullable=False),
        sa.Column("key_columns", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("rows_reused", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("chunks_reused", sa.Integer(), nullable=False),
        sa.Column("dataset_zone", sa.String(16), nullable=True),
        sa.Column("dataset_name", sa.String(128), nullable=True),
        sa.Column("dataset_version", sa.Integer(), nullable=True),
        sa.Column("work_dir", sa.Text(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_jobs")),
    )
    op.create_index("ix_batch_jobs_spec_hash", "batch_jobs", ["spec_hash"])
    op.create_index("ix_batch_jobs_model_version", "batch_jobs", ["model", "version"])


def downgrade() -> None:
    op.drop_table("batch_jobs")
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("layout")
