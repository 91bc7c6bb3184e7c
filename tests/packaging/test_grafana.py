"""Grafana's provisioning files and dashboards: complete, fixed datasource uids, real metrics.

The dashboards are checked the way Grafana's file provisioning reads them, their PromQL by
``promtool`` and against the ``/metrics`` of a real app serving a registered model (with a
stored monitoring report, so the monitoring gauges have samples). That each query returns
series is checked here with a real Prometheus scraping the app on loopback (as compose wires
it) and again by the compose end-to-end test; that each SQL query runs on both backends is
``tests/store/test_views.py``'s.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sklearn.pipeline import Pipeline
from tests.helpers import make_frame, make_settings
from tests.serving.conftest import records, serving
from tests.serving.test_wire import LiveServer

from shipyard import Project
from shipyard.core.exceptions import InvalidArgumentError
from shipyard.packaging.grafana import (
    POSTGRES,
    PROMETHEUS,
    expand_macros,
    grafana_files,
    promql_queries,
    sql_queries,
)
from shipyard.packaging.prometheus import JOB
from shipyard.packaging.settings import DeploySettings
from shipyard.serving import create_app
from shipyard.value import business_value

Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]

DATASOURCES = "grafana/provisioning/datasources/shipyard.yaml"
PROVIDER = "grafana/provisioning/dashboards/shipyard.yaml"
VIEWS = {
    "shipyard_predictions", "shipyard_batch_jobs", "shipyard_monitor_values",
    "shipyard_business_value", "shipyard_runs", "shipyard_promotions",
}  # fmt: skip
#: Labels Prometheus adds when it scrapes (the api replicas' job and replica name).
SCRAPE_LABELS = {"job", "instance", "replica"}
#: Series Prometheus makes itself, not found in an app's /metrics.
SCRAPE_SERIES = {"up"}
VALUE_TOML = """
[project]
name = "grafana"

[value]
currency = "EUR"
decisions_per_period = 1000
running_cost_per_period = 500

[value.classification]
true_positive = 120
false_positive = -15
"""


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the server's loop)."""
    return "asyncio"


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    """What ``shipyard compose`` writes for Grafana, for 3 api replicas."""
    return grafana_files(DeploySettings(replicas=3), "churn demo")


def _dashboards(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {
        path: json.loads(text)
        for path, text in files.items()
        if path.startswith("grafana/dashboards/")
    }


def _datasources(node: Any) -> Iterator[Any]:
    """Every ``datasource`` value anywhere in a dashboard model."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from _datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasources(item)


def test_the_files_are_grafanas_provisioning_layout(files: dict[str, str]) -> None:
    assert set(files) == {
        DATASOURCES,
        PROVIDER,
        *(f"grafana/dashboards/shipyard-{key}.json" for key in
          ("serving", "monitoring", "business", "operations")),
    }  # fmt: skip


def test_the_datasources_have_fixed_uids_and_the_password_from_the_environment(
    files: dict[str, str],
) -> None:
    config = yaml.safe_load(files[DATASOURCES])
    assert config["apiVersion"] == 1
    by_uid = {source["uid"]: source for source in config["datasources"]}
    assert set(by_uid) == {PROMETHEUS["uid"], POSTGRES["uid"]}
    prometheus, postgres = by_uid[PROMETHEUS["uid"]], by_uid[POSTGRES["uid"]]
    assert (prometheus["type"], prometheus["url"]) == ("prometheus", "http://prometheus:9090")
    assert (postgres["type"], postgres["url"], postgres["user"]) == (
        POSTGRES["type"],
        "postgres:5432",
        "shipyard",
    )
    assert postgres["jsonData"]["database"] == "shipyard"
    assert postgres["jsonData"]["sslmode"] == "disable"
    # Grafana expands $VAR / ${VAR} in provisioning files from its own environment
    assert postgres["secureJsonData"]["password"] == "${POSTGRES_PASSWORD}"


def test_the_dashboard_provider_reads_the_mounted_folder(files: dict[str, str]) -> None:
    (provider,) = yaml.safe_load(files[PROVIDER])["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider["folder"] == "churn demo"


def test_dashboards_are_complete_models_for_file_provisioning(files: dict[str, str]) -> None:
    dashboards = _dashboards(files)
    assert len({d["uid"] for d in dashboards.values()}) == len(dashboards)
    for path, model in dashboards.items():
        assert "${DS_" not in files[path], path
        assert "__inputs" not in model, path
        assert re.fullmatch(r"[a-z0-9-]{1,40}", model["uid"]), path
        assert model["title"].startswith("churn demo · ")
        assert isinstance(model["schemaVersion"], int)
        fixed = [PROMETHEUS, POSTGRES]
        assert all(source in fixed for source in _datasources(model)), path
        assert model["annotations"]["list"], f"{path} has no promotion annotations"
        cells: set[tuple[int, int]] = set()
        ids = [panel["id"] for panel in model["panels"]]
        assert len(set(ids)) == len(ids), path
        for panel in model["panels"]:
            where = f"{path}: {panel['title']}"
            assert all(panel[key] for key in ("type", "title", "targets")), where
            grid = panel["gridPos"]
            assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24, where
            mine = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not mine & cells, f"{where} overlaps another panel"
            cells |= mine
            refs = [target["refId"] for target in panel["targets"]]
            assert len(set(refs)) == len(refs), where
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where
                assert ("expr" in target) == (target["datasource"] == PROMETHEUS), where


def test_the_replicas_panel_expects_the_deployed_replicas(files: dict[str, str]) -> None:
    serving = _dashboards(files)["grafana/dashboards/shipyard-serving.json"]
    (panel,) = [p for p in serving["panels"] if p["title"] == "API replicas up"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps == [{"color": "red", "value": None}, {"color": "green", "value": 3}]


def test_promql_queries_come_ready_for_prometheus(files: dict[str, str], tmp_path: Path) -> None:
    queries = promql_queries(files)
    assert len(queries) >= 20
    for query in queries:
        assert "$" not in query, query
        for opening, closing in ("()", "{}", "[]"):
            assert query.count(opening) == query.count(closing), query
    assert any("[1m]" in q for q in queries)
    assert set(re.findall(r'job="([^"]*)"', " ".join(queries))) == {JOB}  # prometheus.yml's
    assert all("[5m]" not in q for q in promql_queries(files, rate_interval="2m"))
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": q} for n, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def monitored_app_project(tmp_path: Path, trained: Trained) -> Iterator[Project]:
    """``churn:1`` in production with a business value and a stored labelled report."""
    model, frame, target = trained
    settings = make_settings(tmp_path / "proj", f"sqlite:///{tmp_path / 'meta.db'}", VALUE_TOML)
    with Project(settings=settings) as project:
        assert project.value is not None
        proba = model.predict_proba(frame)[:, 1]
        value = business_value(project.value, target, proba=proba).metrics()
        project.registry.register(
            "churn",
            model,
            input_example=frame.head(5),
            reference=frame,
            metrics={"f1": 0.6, **value},
            trust=True,
        )
        project.registry.promote("churn:1", to="production")
        current, truth = make_frame(300, seed=5)
        labelled = tmp_path / "labelled.parquet"
        current.assign(churned=truth).to_parquet(labelled)
        project.monitor("churn", current=str(labelled), target="churned")
        yield project


def _metrics(text: str) -> dict[str, dict[str, set[str]]]:
    """Series names in an exposition, each with its label names and their values."""
    found: dict[str, dict[str, set[str]]] = {}
    for line in text.splitlines():
        declared = re.match(r"# (?:HELP|TYPE) (\w+)", line)
        if declared:  # a family without samples yet is still a name the app exposes
            found.setdefault(declared.group(1), {})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = found.setdefault(sample.name, {})
            for name, value in sample.labels.items():
                labels.setdefault(name, set()).add(value)
    return found


@pytest.mark.anyio
async def test_promql_reads_series_and_labels_the_app_exposes(
    files: dict[str, str], monitored_app_project: Project, trained: Trained
) -> None:
    frame = trained[1]
    app = create_app(monitored_app_project.registry, ["churn@production"])
    async with serving(app) as client:
        for start in range(0, 6, 2):
            answer = await client.post(
                "/v1/models/churn/predict", content=records(frame.iloc[start : start + 2])
            )
            assert answer.status_code == 200
        await client.post("/invocations", json={"dataframe_records": [{"tenure": "x"}]})
        exposition = (await client.get("/metrics")).text
    exposed = _metrics(exposition)
    for query in promql_queries(files):
        names = set(re.findall(r"\b(shipyard_\w+|up)\b(?!\s*\()", query))
        assert names, query
        assert names - SCRAPE_SERIES <= set(exposed), f"{query}: not in /metrics"
        labels = {label for name in names - SCRAPE_SERIES for label in exposed[name]}
        grouped = {
            label.strip()
            for group in re.findall(r"\bby \(([^)]*)\)", query)
            for label in group.split(",")
        }
        matched = dict(re.findall(r'(\w+)=~?"([^"]*)"', query))
        assert grouped | set(matched) <= labels | SCRAPE_LABELS, f"{query}: unknown label"
        for name in names - SCRAPE_SERIES:  # an exact match must meet a real value
            for label, wanted in re.findall(rf'{name}{{[^}}]*?(\w+)="([^"]*)"', query):
                assert wanted in exposed[name].get(label, set()), f"{query}: {label}={wanted}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


@pytest.mark.slow
def test_every_promql_query_has_series_in_a_real_prometheus(
    files: dict[str, str], monitored_app_project: Project, trained: Trained, tmp_path: Path
) -> None:
    """A real Prometheus scrapes a real app as compose wires it (job, replica label)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    server = LiveServer(create_app(monitored_app_project.registry, ["churn@production"]))
    server.start()
    port = _free_port()
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [
                    {
                        "targets": [server.url.removeprefix("http://")],
                        "labels": {"replica": "api-1"},
                    }
                ],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api/v1/query?"
    try:
        rows = records(trained[1].head(2))
        with httpx.Client(base_url=server.url) as client:
            deadline = time.monotonic() + 60
            while True:  # traffic until Prometheus holds a few scrapes of it
                assert client.post("/v1/models/churn/predict", content=rows).status_code == 200
                try:
                    held = _get(api + urllib.parse.urlencode(
                        {"query": "count_over_time(shipyard_requests_total[1m])"}
                    ))["data"]["result"]  # fmt: skip
                except OSError:  # not listening yet
                    held = []
                if held and float(held[0]["value"][1]) >= 4:
                    break
                assert time.monotonic() < deadline, "Prometheus never scraped the app"
                time.sleep(0.2)
        empty = [
            query
            for query in promql_queries(files, rate_interval="30s")
            if not _get(api + urllib.parse.urlencode({"query": query}))["data"]["result"]
        ]
        assert not empty, "no series for:\n" + "\n".join(empty)
    finally:
        prometheus.terminate()
        prometheus.wait(20)
        server.stop()


def test_sql_reads_only_the_views(files: dict[str, str]) -> None:
    queries = sql_queries(files)
    assert len(queries) >= 15
    read = {t for q in queries for t in re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", q)}
    assert read == VIEWS


def test_queries_are_read_from_the_written_folder_too(
    files: dict[str, str], tmp_path: Path
) -> None:
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text, encoding="utf-8")
    assert promql_queries(tmp_path) == promql_queries(files)
    assert sql_queries(str(tmp_path)) == sql_queries(files)
    with pytest.raises(InvalidArgumentError, match="pass the folder `shipyard compose --out`"):
        sql_queries(tmp_path / "nowhere")


def test_expand_macros_writes_each_backends_times() -> None:
    start = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    end = datetime(2026, 1, 3, tzinfo=UTC)
    sql = "SELECT 1 WHERE $__timeFilter(p.at) AND $__timeFrom() < $__timeTo() -- $__interval"
    assert expand_macros(sql, "sqlite", start, end) == (
        "SELECT 1 WHERE p.at BETWEEN '2026-01-02 03:04:05.600000' AND "
        "'2026-01-03 00:00:00.000000' AND '2026-01-02 03:04:05.600000' < "
        "'2026-01-03 00:00:00.000000' -- 60s"
    )
    assert expand_macros("$__timeFilter( at )", "postgresql", start, end) == (
        "at BETWEEN '2026-01-02T03:04:05.600000Z' AND '2026-01-03T00:00:00.000000Z'"
    )
    with pytest.raises(InvalidArgumentError, match=r"\$__timeGroup"):
        expand_macros("SELECT $__timeGroup(at, '1h')", "sqlite")
    with pytest.raises(InvalidArgumentError, match="dialect must be one of sqlite, postgresql"):
        expand_macros("SELECT 1", "mysql")
