"""The metadata schema: models, datasets, runs, serving, batch jobs and monitoring.

Changes to these tables go with an Alembic migration in ``store/migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shipyard.core.clock import utcnow

__all__ = ["utcnow"]  # the tables' default times; import it from shipyard.core.clock


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamps must be timezone-aware, got {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (so migrations can refer to them)."""

    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
        list[Any]: sa.JSON(),
    }


class RegisteredModel(Base):
    """A named model; its versions are numbered from 1 and never reused."""

    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    last_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """One immutable version of a model: artifact, signature, metrics and lineage."""

    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("model_id", "version", name="uq_model_versions_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("registered_models.id"), index=True)
    version: Mapped[int]
    flavor: Mapped[str] = mapped_column(sa.String(32))
    flavor_config: Mapped[dict[str, Any]]
    artifact_digest: Mapped[str] = mapped_column(sa.String(64))
    signature: Mapped[dict[str, Any] | None]
    input_example: Mapped[list[Any] | None]
    metrics: Mapped[dict[str, Any]]
    params: Mapped[dict[str, Any]]
    tags: Mapped[dict[str, Any]]
    description: Mapped[str] = mapped_column(sa.Text, default="")
    lineage: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(128))


class ModelAlias(Base):
    """An alias (a stage such as ``production``, or ``champion``) pointing at one version."""

    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(sa.ForeignKey("registered_models.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("model_versions.id"), index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Promotion(Base):
    """One decision about an alias: promoted, refused by a gate, forced, or removed."""

    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("registered_models.id"), index=True)
    alias: Mapped[str] = mapped_column(sa.String(64))
    from_version: Mapped[int | None]
    to_version: Mapped[int | None]
    outcome: Mapped[str] = mapped_column(sa.String(16))
    forced: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    actor: Mapped[str] = mapped_column(sa.String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    gate: Mapped[list[Any]]


class DatasetVersion(Base):
    """One immutable version of a dataset in a zone (``raw``, ``processed``, ``predictions``)."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        sa.UniqueConstraint("zone", "name", "version", name="uq_dataset_versions_number"),
        sa.Index("ix_dataset_versions_zone_name", "zone", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    zone: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[int]
    fingerprint: Mapped[str] = mapped_column(sa.String(64), index=True)
    artifact_digest: Mapped[str] = mapped_column(sa.String(64))
    columns: Mapped[list[Any]]
    row_count: Mapped[int]
    source: Mapped[str] = mapped_column(sa.Text, default="")
    run_id: Mapped[str | None] = mapped_column(sa.String(40))
    step: Mapped[str | None] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    #: ``file``: ``artifact_digest`` is one Parquet blob; ``parts``: it is a tree manifest of
    #: Parquet parts (``part-000000.parquet``, ...) read in name order.
    layout: Mapped[str] = mapped_column(sa.String(16), default="file", server_default="file")


class Run(Base):
    """One run of a pipeline."""

    __tablename__ = "runs"
    __table_args__ = (  # the console lists runs newest first, by pipeline or status
        sa.Index("ix_runs_started_at", "started_at", "id"),
        sa.Index("ix_runs_pipeline_started_at", "pipeline", "started_at"),
        sa.Index("ix_runs_status_started_at", "status", "started_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    pipeline: Mapped[str] = mapped_column(sa.String(128), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    trigger: Mapped[str] = mapped_column(sa.String(32), default="manual")
    params: Mapped[dict[str, Any]]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    error: Mapped[str] = mapped_column(sa.Text, default="")
    created_by: Mapped[str] = mapped_column(sa.String(128))
    #: Written by the running process every few seconds: a ``running`` run whose heartbeat
    #: is too old lost its process and is marked ``failed`` (``Runs.fail_stale``).
    heartbeat_at: Mapped[datetime | None]
    #: Where the run's process runs (host name and pid), for the message when it stops.
    host: Mapped[str] = mapped_column(sa.String(128), default="")
    pid: Mapped[int | None]
    #: The cron fire time a scheduled run was launched for (None for other triggers).
    scheduled_for: Mapped[datetime | None]


class StepRun(Base):
    """One step of a run: its status, cache key, inputs, outputs and error."""

    __tablename__ = "step_runs"
    __table_args__ = (sa.UniqueConstraint("run_id", "step", name="uq_step_runs_run_step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("runs.id"), index=True)
    step: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16))
    cache_key: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    inputs: Mapped[dict[str, Any]]
    outputs: Mapped[dict[str, Any]]
    error: Mapped[str] = mapped_column(sa.Text, default="")
    log_dir: Mapped[str] = mapped_column(sa.Text, default="")


class ScheduleState(Base):
    """The scheduler's memory of one pipeline: last and next fire time, and who holds its lock."""

    __tablename__ = "schedule_state"

    pipeline: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    last_fire_at: Mapped[datetime | None]
    next_fire_at: Mapped[datetime | None]
    lock_owner: Mapped[str | None] = mapped_column(sa.String(128))
    lock_expires_at: Mapped[datetime | None]


class PredictionLogEntry(Base):
    """One answered prediction request: what came in, what went out, how long it took.

    Written in batches by the server's prediction log; ``shadow`` marks answers a shadow
    (mirrored) model computed but the client never saw.
    """

    __tablename__ = "prediction_log"
    __table_args__ = (
        sa.Index("ix_prediction_log_model_at", "model", "at"),
        sa.Index("ix_prediction_log_request_id", "request_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[int]
    request_id: Mapped[str] = mapped_column(sa.String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    latency_ms: Mapped[float] = mapped_column(sa.Float())
    inputs: Mapped[list[Any]]
    outputs: Mapped[dict[str, Any]]
    shadow: Mapped[bool] = mapped_column(default=False)


class ApiToken(Base):
    """An API token of the model server: only the sha256 of its secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scopes: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    #: The models the token may predict on and label (None: every model).
    models: Mapped[list[Any] | None]


class BatchJob(Base):
    """One batch scoring job: the predictions store's index of what was scored, and resume state.

    ``spec_hash`` identifies what the job does (reference, input, output, chunking, keys), so
    ``shipyard predict --resume`` finds the unfinished job to continue; its scored chunks are
    Parquet parts in ``work_dir`` until the job commits them as a dataset version.
    """

    __tablename__ = "batch_jobs"
    __table_args__ = (sa.Index("ix_batch_jobs_model_version", "model", "version"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    spec_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    ref: Mapped[str] = mapped_column(sa.String(256))
    model: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[int]
    input: Mapped[str] = mapped_column(sa.Text)
    output: Mapped[str] = mapped_column(sa.Text)
    engine: Mapped[str] = mapped_column(sa.String(16))
    chunk_rows: Mapped[int]
    key_columns: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(sa.String(16))
    rows: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    rows_reused: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    chunks: Mapped[int] = mapped_column(default=0)
    chunks_reused: Mapped[int] = mapped_column(default=0)
    dataset_zone: Mapped[str | None] = mapped_column(sa.String(16))
    dataset_name: Mapped[str | None] = mapped_column(sa.String(128))
    dataset_version: Mapped[int | None]
    work_dir: Mapped[str] = mapped_column(sa.Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    error: Mapped[str] = mapped_column(sa.Text, default="")
    created_by: Mapped[str] = mapped_column(sa.String(128))


class ReferenceProfile(Base):
    """A model version's reference profile: per-column summaries monitoring compares with.

    The profile itself (JSON, see ``shipyard.statistics.profile``) is an artifact blob;
    ``source`` says what it was computed from (``registration``, a file, a dataset).
    The newest row of a version is the one monitoring uses.
    """

    __tablename__ = "reference_profiles"
    __table_args__ = (sa.Index("ix_reference_profiles_model_version", "model", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[int]
    digest: Mapped[str] = mapped_column(sa.String(64))
    rows: Mapped[int] = mapped_column(sa.BigInteger)
    source: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Feedback(Base):
    """Ground truth for one prediction: by request id (and row) of the log, or by key.

    A second label for the same prediction replaces the first (one row per
    ``(model, request_id, row, key)``).
    """

    __tablename__ = "feedback"
    __table_args__ = (
        sa.UniqueConstraint("model", "request_id", "row", "key", name="uq_feedback_prediction"),
        sa.Index("ix_feedback_model_received_at", "model", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(128))
    request_id: Mapped[str] = mapped_column(sa.String(128), default="")
    row: Mapped[int] = mapped_column(default=0)
    key: Mapped[str] = mapped_column(sa.String(256), default="")
    label: Mapped[str] = mapped_column(sa.Text)  # JSON text of the true value
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorResult(Base):
    """One monitoring report of one model over one window: the time series of monitoring.

    ``report`` is the whole report (what ``shipyard monitor --json`` prints); the headline
    numbers are columns so dashboards (Grafana, Superset) can chart them with plain SQL, and
    :class:`MonitorValue` holds every per-column and per-metric number in long form.
    """

    __tablename__ = "monitor_results"
    __table_args__ = (sa.Index("ix_monitor_results_model_at", "model", "computed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[int]
    monitor: Mapped[str] = mapped_column(sa.String(128), default="")
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    reference: Mapped[str] = mapped_column(sa.Text)
    current: Mapped[str] = mapped_column(sa.Text)
    rows: Mapped[int] = mapped_column(sa.BigInteger)
    dataset_drift: Mapped[bool]
    drift_share: Mapped[float] = mapped_column(sa.Float())
    prediction_drift: Mapped[bool | None]
    failing_share: Mapped[float | None] = mapped_column(sa.Float())
    report: Mapped[dict[str, Any]]


class MonitorValue(Base):
    """One number of a monitoring report, long form: (kind, column, metric) → value."""

    __tablename__ = "monitor_values"
    __table_args__ = (
        sa.Index("ix_monitor_values_model_metric", "model", "kind", "metric"),
        sa.Index("ix_monitor_values_result_id", "result_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(sa.ForeignKey("monitor_results.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(128))
    computed_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(sa.String(16))  # drift | prediction | quality | performance
    column: Mapped[str] = mapped_column(sa.String(256), default="")
    metric: Mapped[str] = mapped_column(sa.String(64))
    value: Mapped[float] = mapped_column(sa.Float())


class AlertState(Base):
    """Whether one alert rule is firing for one model: one alert per condition until it clears."""

    __tablename__ = "alert_state"
    __table_args__ = (sa.UniqueConstraint("rule", "model", name="uq_alert_state_rule_model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(sa.String(128))
    model: Mapped[str] = mapped_column(sa.String(128))
    active: Mapped[bool]
    value: Mapped[float | None] = mapped_column(sa.Float())
    since: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
