"""Datasets in zones, pipeline runs and step runs, scheduler state.

Revision ID: 0002_datasets_runs
Revises: 0001_registry
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shipyard.store.tables import UTCDateTime

revision = "0002_datasets_runs"
down_revision = "0001_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("zone", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("artifact_digest", sa.String(64), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=True),
        sa.Column("step", sa.String(128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
        sa.UniqueConstraint("zone", "name", "version", name="uq_dataset_versions_number"),
    )
    op.create_index("ix_dataset_versions_zone_name", "dataset_versions", ["zone", "name"])
    op.create_index(op.f("ix_dataset_versions_fingerprint"), "dataset_versions", ["fingerprint"])
    op.create_table(
        "runs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("pipeline", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_pipeline"), "runs", ["pipeline"])
    op.create_table(
        "step_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("log_dir", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_step_runs_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_runs")),
        sa.UniqueConstraint("run_id", "step", name="uq_step_runs_run_step"),
    )
    op.create_index(op.f("ix_step_runs_run_id"), "step_runs", ["run_id"])
    op.create_index(op.f("ix_step_runs_cache_key"), "step_runs", ["cache_key"])
    op.create_table(
        "schedule_state",
        sa.Column("pipeline", sa.String(128), nullable=False),
        sa.Column("last_fire_at", UTCDateTime(), nullable=True),
        sa.Column("next_fire_at", UTCDateTime(), nullable=True),
        sa.Column("lock_owner", sa.String(128), nullable=True),
        sa.Column("lock_expires_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("pipeline", name=op.f("pk_schedule_state")),
    )


def downgrade() -> None:
    op.drop_table("schedule_state")
    op.drop_table("step_runs")
    op.drop_table("runs")
    op.drop_table("dataset_versions")
