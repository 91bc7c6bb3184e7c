"""The packaging stage run for real: the image built from the debootstrap base, every role
run in it, and the core + monitoring profiles brought up with images built here.

Marked ``docker``: they need the test daemon (``.ci/docker.sh``); ``.ci/run`` runs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml
from croniter import croniter
from tests.packaging.docker_support import ComposeProject, DockerHost

from shipyard import Project
from shipyard.core.settings import Settings
from shipyard.packaging.grafana import promql_queries
from shipyard.store.tables import ScheduleState
from shipyard.templates import create_project

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.xdist_group("docker")]

TAG = "shipyard-e2e-churn:test"
SHIPYARD = [sys.executable, "-m", "shipyard.cli.app"]
REGISTRY = "/registry"  # where the image test mounts its SQLite registry


def shipyard(*args: str, env: dict[str, str], timeout: float = 1800) -> str:
    """Run the shipyard command as a user would; its output (fails with it on error)."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("shipyard")), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"shipyard {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def http(url: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
    """GET (or POST ``body`` as JSON) ``url``: the status and the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def rows(project: Path, count: int) -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_csv(project / "data" / "customers.csv").head(count)
    return json.loads(frame.drop(columns=["customer_id", "churned"]).to_json(orient="records"))


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template project (one api replica for the compose test: 2 cores)."""
    root = tmp_path_factory.mktemp("deploy") / "churn"
    create_project(root, "churn")
    settings = root / "shipyard.toml"
    text = settings.read_text().replace(
        "# ports = {",
        "ports = { objectstore = 19000, objectstore_console = 19001, jupyter = 18888, "
        "airflow = 18080, ",
    )  # high ports: the machine's own services keep theirs
    settings.write_text(
        text.replace(
            "api = 8000, grafana = 3000, prometheus = 9090, superset = 8088",
            "api = 18000, grafana = 13000, prometheus = 19090, superset = 18088",
        )
    )
    return root


@pytest.fixture(scope="module")
def image(churn: Path, docker_host: DockerHost, base_image: str) -> str:
    """``shipyard build`` of the template project on the debootstrap base."""
    env = docker_host.env(DOCKER_BUILDKIT="0")
    shipyard("build", "--base-image", base_image, "--tag", TAG, "--project", str(churn), env=env)
    return TAG


def test_the_image_is_non_root_labelled_and_checks_its_health(
    image: str, docker_host: DockerHost
) -> None:
    config = json.loads(docker_host.docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert "/health/ready" in " ".join(config["Healthcheck"]["Test"])
    assert config["Labels"]["io.shipyard.models"] == "churn@production"
    assert config["Entrypoint"] == ["shipyard"]
    assert docker_host.run(image, "--help").count("serve") >= 1


def _missed_fire(database: str) -> None:
    """Make the train schedule's next fire time its last Monday 06:00: the scheduler missed it."""
    paris = datetime.now(ZoneInfo("Europe/Paris"))
    last_monday: datetime = croniter("0 6 * * 1", paris).get_prev(datetime)
    engine = sa.create_engine(database)
    with engine.begin() as connection:  # through the column's type: stored as the scheduler does
        changed = connection.execute(
            sa.update(ScheduleState)
            .where(ScheduleState.pipeline == "train")
            .values(next_fire_at=last_monday.astimezone(UTC))
        ).rowcount
    engine.dispose()
    assert changed == 1


def test_one_image_runs_scheduler_serve_predict_and_monitor(
    image: str, churn: Path, docker_host: DockerHost, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    (registry / "artifacts").mkdir(parents=True)
    os.chmod(registry, 0o777)
    os.chmod(registry / "artifacts", 0o777)
    inside = {
        "SHIPYARD_DATABASE_URL": f"sqlite:///{REGISTRY}/shipyard.db",
        "SHIPYARD_ARTIFACTS": f"{REGISTRY}/artifacts",
    }
    options = [f"--volume={registry}:{REGISTRY}", f"--volume={churn / 'data'}:/app/data:ro"]
    options += [f"--env={name}={value}" for name, value in inside.items()]
    # The scheduler role: first sight of the schedule, then a missed Monday run is caught up.
    docker_host.run(image, "scheduler", "--once", options=options)
    host_db = f"sqlite:///{registry / 'shipyard.db'}"
    _missed_fire(host_db)
    fired = docker_host.run(image, "scheduler", "--once", options=options, timeout=900)
    assert "train" in fired, fired
    assert "succeeded" in fired, fired
    environ = {"SHIPYARD_DATABASE_URL": host_db, "SHIPYARD_ARTIFACTS": str(registry / "artifacts")}
    with Project(settings=Settings.load(churn, environ=environ)) as project:
        version = project.registry.get("churn@prototype")
        project.registry.set_tags(version.ref, {"business_value": "approved"})
        project.registry.promote(version.ref, to="production", reason="e2e")
        assert [run.trigger for run in project.runs.list()] == ["schedule"]
    for folder in registry.rglob("*"):  # the host wrote new files: let the container's user in
        folder.chmod(0o777 if folder.is_dir() else 0o666)

    # The serve role (the image's default command) turns healthy and answers.
    server = docker_host.start(image, options=[*options, "--publish=127.0.0.1::8000"])
    docker_host.wait_healthy(server, timeout=180)
    port = docker_host.docker("port", server, "8000").stdout.split(":")[-1].strip()
    status, answer = http(f"http://127.0.0.1:{port}/v1/models/churn/predict", rows(churn, 3))
    assert status == 200, answer
    assert len(answer["predictions"]) == 3

    # The batch and monitoring roles, with the data mounted read-only.
    scored = docker_host.run(
        image, "predict", "churn@production", "--input", "data/customers.csv",
        "--key", "customer_id", options=options, timeout=600,
    )  # fmt: skip
    assert "predictions/churn" in scored, scored
    monitored = docker_host.run(
        image, "monitor", "churn@production", "--current", "data/customers.csv",
        "--target", "churned", "--json", options=options, timeout=600,
    )  # fmt: skip
    assert json.loads(monitored)["model"].startswith("churn"), monitored


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(2)
    raise AssertionError(f"{what} did not happen in {timeout:.0f}s")


def _published(project: ComposeProject, service: str, port: int) -> str:
    return project("port", service, str(port)).stdout.strip().rsplit(":", 1)[1]


def test_core_and_monitoring_come_up_with_local_images(
    image: str,
    churn: Path,
    base_image: str,
    docker_host: DockerHost,
    compose_project: Callable[..., ComposeProject],
    tmp_path: Path,
) -> None:
    out = tmp_path / "deploy"
    env = docker_host.env()
    shipyard(
        "compose", "--out", str(out), "--local-images", "--base-image", base_image,
        "--tag", image, "--replicas", "2", "--project", str(churn),
        env=env,
    )  # fmt: skip
    prometheus_dir = out / "prometheus"
    checked = subprocess.run(
        ["promtool", "check", "config", str(prometheus_dir / "prometheus.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    project = compose_project(
        out, files=["compose.yaml", "compose.local.yaml"], profiles=["core", "monitoring"]
    )
    project("build")
    # First deploy: the stores and the scheduler, then the first training run in production.
    project("up", "-d", "--wait", "postgres", "objectstore", "buckets", "scheduler")
    trained = project("exec", "-T", "scheduler", "shipyard", "run", "train").stdout
    assert "succeeded" in trained, trained
    project("exec", "-T", "scheduler", "shipyard", "models", "tag", "churn:1",
            "business_value=approved")  # fmt: skip
    project("exec", "-T", "scheduler", "shipyard", "models", "promote", "churn:1",
            "--to", "production")  # fmt: skip
    monitored = project(
        "exec", "-T", "scheduler", "shipyard", "monitor", "churn@production",
        "--current", "data/customers.csv", "--target", "churned", "--json",
    )  # fmt: skip
    assert json.loads(monitored.stdout)["model"].startswith("churn"), monitored.stdout
    # Everything of core and monitoring but Grafana, whose image cannot be pulled here.
    project("up", "-d", "--wait", "api-1", "api-2", "proxy", "prometheus")

    # The api replicas answer through the proxy, each one in turn.
    entry = f"http://127.0.0.1:{_published(project, 'proxy', 8080)}"
    # `up --wait` saw the replicas healthy from inside; the proxy may still answer 502 for a
    # moment on a loaded host (seen once in CI): wait for its first 200, then no error at all.
    deadline = time.monotonic() + 60  # a guard against a proxy that never connects
    status, answer = http(f"{entry}/v1/models/churn/predict", rows(churn, 2))
    while status == 502 and time.monotonic() < deadline:
        time.sleep(1)
        status, answer = http(f"{entry}/v1/models/churn/predict", rows(churn, 2))
    assert status == 200, answer
    for _ in range(40):
        status, answer = http(f"{entry}/v1/models/churn/predict", rows(churn, 2))
        assert status == 200, answer
    served = {http(f"{entry}/health/ready")[1]["models"][0] for _ in range(4)}
    assert served == {"churn:1"}

    # Metadata in PostgreSQL, artifacts and dataset zones in the object store.
    counted = project(
        "exec", "-T", "postgres", "psql", "-U", "shipyard", "-d", "shipyard", "-At", "-c",
        "SELECT count(*) FROM model_versions; SELECT count(*) FROM dataset_versions;"
        " SELECT count(*) FROM prediction_log;",
    ).stdout.split()  # fmt: skip
    assert int(counted[0]) == 1, counted
    assert int(counted[1]) >= 3, counted
    listed = project(
        "exec", "-T", "scheduler", "python", "-c",
        "import s3fs; print(len(s3fs.S3FileSystem().find('shipyard/artifacts')))",
    ).stdout  # fmt: skip
    assert int(listed.strip()) >= 5, listed

    # Prometheus scrapes every replica, and every dashboard query has a series.
    prometheus = f"http://127.0.0.1:{_published(project, 'prometheus', 9090)}"

    def targets_up() -> bool:
        _status, answer = http(f"{prometheus}/api/v1/targets")
        active = [
            t for t in answer["data"]["activeTargets"] if t["labels"]["job"] == "shipyard-api"
        ]
        return len(active) == 2 and all(t["health"] == "up" for t in active)

    _wait(targets_up, 60, "both api replicas scraped")
    for _ in range(20):  # traffic after the first scrapes, so rates have two samples
        http(f"{entry}/v1/models/churn/predict", rows(churn, 2))
    time.sleep(12)
    grafana = yaml.safe_load(
        (out / "grafana" / "provisioning" / "datasources" / "shipyard.yaml").read_text()
    )
    assert {d["uid"] for d in grafana["datasources"]} >= {
        "shipyard-prometheus",
        "shipyard-postgres",
    }
    empty = []
    for query in promql_queries(out):
        url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode(
            {"query": query.replace("$__rate_interval", "1m").replace("$__interval", "15s")}
        )
        status, answer = http(url)
        if status != 200 or not answer["data"]["result"]:
            empty.append((query, answer))
    assert not empty, empty
