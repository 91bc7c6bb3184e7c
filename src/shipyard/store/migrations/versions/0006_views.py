"""Read-only views for dashboards (Grafana, Superset): stable names over the metadata tables.

Each view has the same columns on SQLite and PostgreSQL; only the expressions differ (JSON
extraction, durations, string aggregation). Times are the tables' UTC timestamps
(``timestamptz`` on PostgreSQL; UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` on SQLite), booleans
are PostgreSQL booleans or SQLite's 0/1. ``docs/views.md`` documents every column.

A later migration that alters a column a view reads must drop the view first and create it
again after (PostgreSQL refuses to change a column a view depends on).

Revision ID: 0006_views
Revises: 0005_monitoring
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0006_views"
down_revision = "0005_monitoring"
branch_labels = None
depends_on = None

#: The views, in creation order (dropped in reverse).
VIEWS = (
    "shipyard_predictions",
    "shipyard_batch_jobs",
    "shipyard_monitor_values",
    "shipyard_business_value",
    "shipyard_runs",
    "shipyard_promotions",
)

#: The business value metrics a version may store (``shipyard.value.ValueReport.metrics``).
_VALUE_METRICS = (
    "roi",
    "net_per_period",
    "ebitda_low",
    "ebitda_mid",
    "ebitda_high",
    "gain_per_period",
    "value_per_decision",
    "payback_periods",
    "uplift_per_period",
)


def _seconds(dialect: str, start: str, end: str) -> str:
    """Seconds from ``start`` to ``end`` (NULL while ``end`` is NULL), to the millisecond."""
    if dialect == "postgresql":
        return (
            f"CAST(ROUND(CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS NUMERIC), 3) "
            "AS DOUBLE PRECISION)"
        )
    return f"ROUND((julianday({end}) - julianday({start})) * 86400.0, 3)"


def _predictions(dialect: str) -> str:
    if dialect == "postgresql":
        rows = (
            "CASE WHEN json_typeof(p.outputs -> 'predictions') = 'array' "
            "THEN json_array_length(p.outputs -> 'predictions') ELSE 0 END"
        )
    else:
        rows = "COALESCE(json_array_length(p.outputs, '$.predictions'), 0)"
    return f"""
SELECT
    p.id AS id,
    p.request_id AS request_id,
    p.model AS model,
    p.version AS version,
    p.at AS scored_at,
    p.latency_ms AS latency_ms,
    {rows} AS row_count,
    p.shadow AS shadow
FROM prediction_log p
"""


def _batch_jobs(dialect: str) -> str:
    return f"""
SELECT
    j.id AS job_id,
    j.ref AS ref,
    j.model AS model,
    j.version AS version,
    j.engine AS engine,
    j.status AS status,
    j."input" AS input,
    j."output" AS output,
    j."rows" AS row_count,
    j.rows_reused AS rows_reused,
    j.chunks AS chunks,
    j.chunks_reused AS chunks_reused,
    j.chunk_rows AS chunk_rows,
    CASE WHEN j.dataset_name IS NOT NULL AND j.dataset_version IS NOT NULL
        THEN j.dataset_zone || '/' || j.dataset_name || ':' || CAST(j.dataset_version AS TEXT)
    END AS dataset,
    j.started_at AS started_at,
    j.finished_at AS finished_at,
    {_seconds(dialect, "j.started_at", "j.finished_at")} AS duration_seconds,
    j.error AS error,
    j.created_by AS created_by
FROM batch_jobs j
"""


def _monitor_values(_dialect: str) -> str:
    return """
SELECT
    v.id AS id,
    v.result_id AS result_id,
    v.model AS model,
    r.version AS version,
    r.monitor AS monitor,
    v.computed_at AS computed_at,
    r.window_start AS window_start,
    r.window_end AS window_end,
    r."rows" AS window_rows,
    v.kind AS kind,
    v."column" AS column_name,
    v.metric AS metric,
    v.value AS value
FROM monitor_values v
JOIN monitor_results r ON r.id = v.result_id
"""


def _business_value(dialect: str) -> str:
    if dialect == "postgresql":
        metric = "CAST(v.metrics ->> '{}' AS DOUBLE PRECISION)"
        aliases = (
            "(SELECT string_agg(a.alias, ',' ORDER BY a.alias) FROM model_aliases a "
            "WHERE a.version_id = v.id)"
        )
        has_value = "(v.metrics ->> 'net_per_period') IS NOT NULL"
    else:
        metric = "CAST(json_extract(v.metrics, '$.{}') AS REAL)"
        aliases = (
            "(SELECT group_concat(s.alias, ',') FROM (SELECT a.alias AS alias "
            "FROM model_aliases a WHERE a.version_id = v.id ORDER BY a.alias) s)"
        )
        has_value = "json_extract(v.metrics, '$.net_per_period') IS NOT NULL"
    values = ",\n    ".join(f"{metric.format(name)} AS {name}" for name in _VALUE_METRICS)
    return f"""
SELECT
    m.name AS model,
    v.version AS version,
    v.status AS status,
    v.created_at AS registered_at,
    v.created_by AS registered_by,
    {values},
    {aliases} AS aliases,
    EXISTS (
        SELECT 1 FROM model_aliases a WHERE a.version_id = v.id AND a.alias = 'production'
    ) AS in_production
FROM model_versions v
JOIN registered_models m ON m.id = v.model_id
WHERE {has_value}
"""


def _runs(dialect: str) -> str:
    def steps(condition: str) -> str:
        return f"(SELECT COUNT(*) FROM step_runs s WHERE s.run_id = r.id{condition})"

    return f"""
SELECT
    r.id AS run_id,
    r.pipeline AS pipeline,
    r.status AS status,
    r."trigger" AS triggered_by,
    r.started_at AS started_at,
    r.finished_at AS finished_at,
    {_seconds(dialect, "r.started_at", "r.finished_at")} AS duration_seconds,
    {steps("")} AS steps,
    {steps(" AND s.status IN ('failed', 'killed')")} AS failed_steps,
    {steps(" AND s.status = 'cached'")} AS cached_steps,
    r.error AS error,
    r.created_by AS created_by
FROM runs r
"""


def _promotions(_dialect: str) -> str:
    return """
SELECT
    p.id AS id,
    p.at AS decided_at,
    m.name AS model,
    p.alias AS alias,
    p.from_version AS from_version,
    p.to_version AS to_version,
    p.outcome AS outcome,
    p.forced AS forced,
    p.reason AS reason,
    p.actor AS actor
FROM promotions p
JOIN registered_models m ON m.id = p.model_id
"""


_DEFINITIONS = {
    "shipyard_predictions": _predictions,
    "shipyard_batch_jobs": _batch_jobs,
    "shipyard_monitor_values": _monitor_values,
    "shipyard_business_value": _business_value,
    "shipyard_runs": _runs,
    "shipyard_promotions": _promotions,
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in VIEWS:
        op.execute(f"CREATE VIEW {name} AS {_DEFINITIONS[name](dialect).strip()}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
