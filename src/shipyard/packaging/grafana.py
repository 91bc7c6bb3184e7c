"""Grafana for ``shipyard compose``: datasources and dashboards provisioned from files.

:func:`grafana_files` gives, relative to the compose output folder:

- ``grafana/provisioning/datasources/shipyard.yaml``: Prometheus (uid ``shipyard-prometheus``)
  and the metadata database (PostgreSQL, uid ``shipyard-postgres``; its password comes from
  the container's ``POSTGRES_PASSWORD`` through Grafana's environment interpolation);
- ``grafana/provisioning/dashboards/shipyard.yaml``: a file provider reading
  ``/var/lib/grafana/dashboards``;
- ``grafana/dashboards/shipyard-{serving,monitoring,business,operations}.json``.

Every panel, target and annotation names its datasource by a fixed uid (``${DS_…}``
placeholders only work when a dashboard is imported by hand, not provisioned). Prometheus
panels read the server's ``/metrics`` (:mod:`shipyard.serving.metrics`,
:mod:`~shipyard.serving.predlog`, :mod:`~shipyard.serving.monitor_metrics`); SQL panels
read only the read-only views of migration ``0006_views`` (``docs/views.md``), and
promotions are annotations on every dashboard. The panels are package data,
``dashboards/KEY.toml`` (titles, sizes and the queries exactly as they run); this module lays
them out and writes Grafana's JSON model.

:func:`promql_queries` and :func:`sql_queries` list every query of the generated dashboards;
:func:`expand_macros` turns Grafana's SQL macros into plain SQL for SQLite or PostgreSQL, so
tests run each panel's query on both backends.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from shipyard.core.exceptions import InvalidArgumentError
from shipyard.packaging.prometheus import SCRAPE_INTERVAL
from shipyard.packaging.settings import DeploySettings

#: The datasources every panel references (fixed uids, provisioned below).
PROMETHEUS = {"type": "prometheus", "uid": "shipyard-prometheus"}
POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "shipyard-postgres"}
#: Where the dashboards folder is mounted in the Grafana container.
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"
_SCHEMA_VERSION = 39

_DATASOURCES = f"""\
# Provisioned by `shipyard compose`: the datasources every shipyard dashboard references by uid.
apiVersion: 1

datasources:
  - name: Prometheus
    type: {PROMETHEUS["type"]}
    uid: {PROMETHEUS["uid"]}
    access: proxy
    url: http://prometheus:9090
    isDefault: true
    editable: false
    jsonData:
      timeInterval: {SCRAPE_INTERVAL}
  - name: shipyard metadata
    type: {POSTGRES["type"]}
    uid: {POSTGRES["uid"]}
    access: proxy
    url: postgres:5432
    user: shipyard
    editable: false
    jsonData:
      database: shipyard
      sslmode: disable
      postgresVersion: 1600
      timescaledb: false
    secureJsonData:
      # Grafana reads it from the container's environment (set from .env by compose).
      password: ${{POSTGRES_PASSWORD}}
"""

_PROVIDER = f"""\
# Provisioned by `shipyard compose`: the dashboards in {DASHBOARDS_PATH}, kept as files.
apiVersion: 1

providers:
  - name: shipyard
    orgId: 1
    folder: {{folder}}
    type: file
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: {DASHBOARDS_PATH}
      foldersFromFilesStructure: false
"""

# -- the dashboards' definitions (package data) ---------------------------------------------

#: The dashboards, by key: ``dashboards/KEY.toml`` becomes ``grafana/dashboards/shipyard-KEY.json``.
DASHBOARDS = ("serving", "monitoring", "business", "operations")

PROMOTIONS_ANNOTATION = """\
SELECT p.decided_at AS time,
  p.model || ':' || COALESCE(CAST(p.to_version AS TEXT), '-') || ' ' || p.outcome
    || ' (' || p.alias || ') by ' || p.actor
    || CASE WHEN p.reason <> '' THEN ': ' || p.reason ELSE '' END AS text,
  'promotion,' || p.alias || ',' || p.outcome AS tags
FROM shipyard_promotions p
WHERE $__timeFilter(p.decided_at)
ORDER BY p.decided_at
"""


@dataclass(frozen=True)
class Panel:
    """One panel of a dashboard definition (the ``[[panels]]`` entries of its TOML file)."""

    title: str
    kind: str
    targets: tuple[dict[str, Any], ...]
    width: int = 12
    height: int = 8
    unit: str = ""
    description: str = ""
    thresholds: tuple[dict[str, Any], ...] = ()


def _definition(key: str) -> tuple[str, list[Panel]]:
    """The title and panels of ``dashboards/KEY.toml``."""
    source = resources.files("shipyard.packaging").joinpath("dashboards", f"{key}.toml")
    table = tomllib.loads(source.read_text(encoding="utf-8"))
    panels = []
    for entry in table["panels"]:
        prometheus = [_prometheus_target(t) for t in entry.get("prometheus", [])]
        sql = [_sql_target(t) for t in entry.get("sql", [])]
        if bool(prometheus) == bool(sql):  # one datasource per panel: no "mixed" panels
            raise ValueError(
                f"dashboards/{key}.toml: panel {entry.get('title')!r} needs [[panels.prometheus]] "
                "or [[panels.sql]] queries, not both or none"
            )
        panels.append(
            Panel(
                title=entry["title"],
                kind=entry["kind"],
                targets=tuple(prometheus or sql),
                width=entry.get("width", 12),
                height=entry.get("height", 8),
                unit=entry.get("unit", ""),
                description=entry.get("description", ""),
                thresholds=tuple(entry.get("thresholds", ())),
            )
        )
    return table["title"], panels


def _prometheus_target(entry: Mapping[str, Any]) -> dict[str, Any]:
    instant = bool(entry.get("instant", False))
    return {
        "datasource": dict(PROMETHEUS),
        "editorMode": "code",
        "expr": entry["expr"].strip(),
        "legendFormat": entry.get("legend") or "__auto",
        "range": not instant,
        "instant": instant,
    }


def _sql_target(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "datasource": dict(POSTGRES),
        "editorMode": "code",
        "format": entry.get("format", "time_series"),
        "rawQuery": True,
        "rawSql": entry["query"].strip(),
    }


# -- JSON -------------------------------------------------------------------------------------


def _options(kind: str, sql: bool) -> dict[str, Any]:
    # A SQL table answers one row per thing: show each row, not one reduced number.
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": sql}
    if kind == "stat":
        return {"reduceOptions": reduce, "colorMode": "value", "graphMode": "area"}
    if kind == "bargauge":
        return {"reduceOptions": reduce, "orientation": "horizontal", "displayMode": "gradient"}
    if kind == "piechart":
        return {"reduceOptions": reduce, "legend": {"displayMode": "table", "placement": "right"}}
    if kind == "timeseries":
        return {"legend": {"displayMode": "list", "placement": "bottom"}}
    return {"showHeader": True}


def _panel_json(
    panel: Panel, number: int, x: int, y: int, deploy: DeploySettings
) -> dict[str, Any]:
    sql = "rawSql" in panel.targets[0]
    defaults: dict[str, Any] = {}
    if panel.unit:
        defaults["unit"] = panel.unit
    if panel.thresholds:
        steps = [
            {
                "color": step["color"],
                # the first step has no lower bound (null in Grafana's JSON)
                "value": deploy.replicas if step.get("value") == "replicas" else step.get("value"),
            }
            for step in panel.thresholds
        ]
        defaults["thresholds"] = {"mode": "absolute", "steps": steps}
    return {
        "id": number,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": dict(POSTGRES if sql else PROMETHEUS),
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "targets": [{"refId": chr(ord("A") + i), **t} for i, t in enumerate(panel.targets)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": _options(panel.kind, sql),
    }


def _layout(panels: list[Panel]) -> Iterator[tuple[Panel, int, int]]:
    """Left to right, a new line when a panel does not fit in Grafana's 24 columns."""
    x = y = line = 0
    for panel in panels:
        if x + panel.width > 24:
            x, y, line = 0, y + line, 0
        yield panel, x, y
        x, line = x + panel.width, max(line, panel.height)


def _dashboard(uid: str, title: str, panels: list[Panel], deploy: DeploySettings) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["shipyard"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": _SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "links": [
            {
                "type": "dashboards",
                "title": "shipyard",
                "tags": ["shipyard"],
                "asDropdown": True,
                "keepTime": True,
                "includeVars": False,
            }
        ],
        "templating": {"list": []},
        "annotations": {
            "list": [
                {
                    "name": "Promotions",
                    "enable": True,
                    "iconColor": "purple",
                    "datasource": dict(POSTGRES),
                    "target": {
                        "refId": "Anno",
                        "datasource": dict(POSTGRES),
                        "editorMode": "code",
                        "format": "table",
                        "rawQuery": True,
                        "rawSql": PROMOTIONS_ANNOTATION.strip(),
                    },
                }
            ]
        },
        "panels": [
            _panel_json(panel, number, x, y, deploy)
            for number, (panel, x, y) in enumerate(_layout(panels), start=1)
        ],
    }


def dashboards(deploy: DeploySettings, project_name: str) -> dict[str, dict[str, Any]]:
    """The dashboards as Grafana JSON models, by file name (``shipyard-KEY.json``)."""
    made = {}
    for key in DASHBOARDS:
        title, panels = _definition(key)
        uid = f"shipyard-{key}"
        made[f"{uid}.json"] = _dashboard(uid, f"{project_name} · {title}", panels, deploy)
    return made


def grafana_files(deploy: DeploySettings, project_name: str) -> dict[str, str]:
    """Grafana's provisioning files and dashboards, by path relative to the compose folder."""
    folder = json.dumps(project_name)  # a JSON string is a valid YAML scalar
    files = {
        "grafana/provisioning/datasources/shipyard.yaml": _DATASOURCES,
        "grafana/provisioning/dashboards/shipyard.yaml": _PROVIDER.format(folder=folder),
    }
    for name, model in dashboards(deploy, project_name).items():
        files[f"grafana/dashboards/{name}"] = json.dumps(model, indent=2) + "\n"
    return files


# -- the queries, for tests and the end-to-end check ------------------------------------------


#: What the query helpers read: :func:`grafana_files`' result, or the folder it was written to.
Files = Mapping[str, str | bytes] | str | os.PathLike[str]


def _dashboard_texts(files: Files) -> list[str | bytes]:
    """The dashboards' JSON among ``files``, or in ``DIR/grafana/dashboards`` for a folder."""
    if isinstance(files, str | os.PathLike):
        folder = Path(files) / "grafana" / "dashboards"
        if not folder.is_dir():
            raise InvalidArgumentError(
                f"{folder} does not exist; pass the folder `shipyard compose --out` wrote, "
                "or the files grafana_files() returned"
            )
        return [path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.json"))]
    return [
        text
        for path, text in sorted(files.items())
        if path.startswith("grafana/dashboards/") and path.endswith(".json")
    ]


def _targets(files: Files) -> Iterator[dict[str, Any]]:
    """Every target and annotation query of the dashboards among ``files``."""
    for text in _dashboard_texts(files):
        model = json.loads(text)
        for annotation in model.get("annotations", {}).get("list", []):
            if "target" in annotation:
                yield annotation["target"]
        for panel in model.get("panels", []):
            yield from panel.get("targets", [])


def promql_queries(files: Files, rate_interval: str = "1m") -> list[str]:
    """Every distinct PromQL query of the dashboards, as Prometheus receives it from Grafana.

    ``files`` is what :func:`grafana_files` returned, or the folder it was written to.

    ``$__rate_interval`` (and ``$__interval``, ``$__range``) become ``rate_interval``, so
    each query can be sent as it is to Prometheus's HTTP API. The queries of the monitoring
    gauges (``shipyard_dataset_drift_share``, ``shipyard_model_performance``…) have series
    only once a monitoring report is stored.
    """
    found = (t["expr"] for t in _targets(files) if "expr" in t)
    expanded = (re.sub(r"\$__(rate_interval|interval|range)\b", rate_interval, q) for q in found)
    return list(dict.fromkeys(expanded))


def sql_queries(files: Files) -> list[str]:
    """Every distinct SQL query of the dashboards (panels and annotations), macros unexpanded.

    ``files`` is what :func:`grafana_files` returned, or the folder it was written to.
    """
    return list(dict.fromkeys(t["rawSql"] for t in _targets(files) if "rawSql" in t))


_SQL_TIME = {"sqlite": "%Y-%m-%d %H:%M:%S.%f", "postgresql": "%Y-%m-%dT%H:%M:%S.%fZ"}
_TIME_FILTER = re.compile(r"\$__timeFilter\(\s*([^()]+?)\s*\)")


def expand_macros(
    sql: str,
    dialect: str,
    start: datetime | None = None,
    end: datetime | None = None,
    interval: timedelta = timedelta(minutes=1),
) -> str:
    """``sql`` with Grafana's macros replaced as Grafana would for the range ``start`` to ``end``.

    ``$__timeFilter(col)`` → ``col BETWEEN 'start' AND 'end'``, ``$__timeFrom()`` /
    ``$__timeTo()`` → the quoted times, ``$__interval`` / ``$__interval_ms`` → ``interval``.
    Times are written the way ``dialect`` (``sqlite`` or ``postgresql``) compares them with
    the views' timestamps. The default range is the last 24 hours up to a minute from now.
    """
    if dialect not in _SQL_TIME:
        raise InvalidArgumentError(
            f"dialect must be one of {', '.join(_SQL_TIME)}, got {dialect!r}; "
            "pass the engine's dialect name"
        )
    now = datetime.now(UTC)
    low = f"'{(start or now - timedelta(days=1)).astimezone(UTC).strftime(_SQL_TIME[dialect])}'"
    high = f"'{(end or now + timedelta(minutes=1)).astimezone(UTC).strftime(_SQL_TIME[dialect])}'"
    seconds = interval.total_seconds()
    text = _TIME_FILTER.sub(lambda m: f"{m.group(1)} BETWEEN {low} AND {high}", sql)
    text = text.replace("$__timeFrom()", low).replace("$__timeTo()", high)
    text = text.replace("$__interval_ms", str(round(seconds * 1000)))
    text = text.replace("$__interval", f"{seconds:g}s")
    if "$__" in text:
        unknown = sorted(set(re.findall(r"\$__\w+", text)))
        raise InvalidArgumentError(
            f"unsupported Grafana macro(s) {', '.join(unknown)} in {sql!r}; use $__timeFilter, "
            "$__timeFrom, $__timeTo or $__interval"
        )
    return text
