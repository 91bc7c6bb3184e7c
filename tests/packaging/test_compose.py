"""``shipyard compose``: the generated Compose file, checked by Compose v2 itself, and its
secrets, profiles, healthchecks, pinned images and errors."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.packaging.docker_support import DockerUnavailable, compose_binary
from typer.testing import CliRunner

from shipyard.cli.app import app
from shipyard.core.exceptions import ConflictError
from shipyard.core.settings import Settings
from shipyard.packaging.compose import LOCAL_FILE, write_compose
from shipyard.packaging.settings import load_deploy
from shipyard.templates import create_project


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compose") / "churn"
    create_project(root, "Churn Project")
    return root


def generate(root: Path, out: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["compose", "--out", str(out), "--project", str(root), *args])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = yaml.safe_load((out / "compose.yaml").read_text())
    return document


def compose_config(out: Path, *files: str, profiles: tuple[str, ...] = ("all",)) -> str:
    """``docker compose config`` (Compose v2's own schema and reference checks)."""
    try:
        binary = compose_binary()
    except DockerUnavailable as exc:
        pytest.fail(str(exc))
    command = [str(binary), "--project-directory", str(out)]
    for name in files or ("compose.yaml",):
        command += ["--file", str(out / name)]
    for profile in profiles:
        command += ["--profile", profile]
    done = subprocess.run(
        [*command, "config", "--quiet"], capture_output=True, text=True, check=False
    )
    return done.stderr if done.returncode else ""


def test_every_profile_passes_compose_v2s_own_checks(churn: Path, tmp_path: Path) -> None:
    document = generate(churn, tmp_path / "deploy", "--profile", "all", "--local-images")
    assert next(iter(document)) == "name"
    assert document["name"] == "churn-project"
    assert compose_config(tmp_path / "deploy") == ""
    assert compose_config(tmp_path / "deploy", "compose.yaml", LOCAL_FILE) == ""
    services = document["services"]
    assert {"postgres", "objectstore", "buckets", "api-1", "api-2", "proxy", "scheduler"} <= set(
        services
    )
    assert {"prometheus", "grafana", "superset", "superset-db", "superset-init"} <= set(services)
    assert {"jupyter", "airflow"} <= set(services)


def test_a_dangling_depends_on_is_caught_by_the_validator(churn: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    document = generate(churn, out)
    document["services"]["api-1"]["depends_on"]["cache"] = {"condition": "service_healthy"}
    (out / "compose.yaml").write_text(yaml.safe_dump(document))
    assert "cache" in compose_config(out)


def test_services_are_healthchecked_pinned_and_wait_for_health(churn: Path, tmp_path: Path) -> None:
    services = generate(churn, tmp_path / "deploy", "--profile", "all")["services"]
    for name, service in services.items():
        image = service["image"]
        assert (":" in image and not image.endswith(":latest")) or "shipyard-" in image, name
        assert "healthcheck" in service, name
        assert "all" in service["profiles"], name
        for needed, condition in service.get("depends_on", {}).items():
            assert needed in services, (name, needed)
            assert condition["condition"] in {
                "service_healthy", "service_completed_successfully", "service_started",
            }  # fmt: skip
    assert services["api-1"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["grafana"]["depends_on"]["prometheus"] == {"condition": "service_healthy"}


def test_prometheus_scrapes_every_replica(churn: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    generate(churn, out, "--replicas", "3")
    config = yaml.safe_load((out / "prometheus" / "prometheus.yml").read_text())
    targets = [
        (group["targets"], group["labels"]["replica"])
        for job in config["scrape_configs"]
        if job["job_name"] == "shipyard-api"
        for group in job["static_configs"]
    ]
    assert targets == [([f"api-{n}:8000"], f"api-{n}") for n in (1, 2, 3)]
    nginx = (out / "proxy" / "nginx.conf").read_text()
    assert all(f"server api-{n}:8000" in nginx for n in (1, 2, 3))


def test_secrets_are_generated_private_and_kept(churn: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    generate(churn, out, "--profile", "all")
    env = dict(
        line.split("=", 1)
        for line in (out / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["COMPOSE_PROFILES"] == "core,monitoring,bi,dev,orchestration"
    secrets = {k: v for k, v in env.items() if k != "COMPOSE_PROFILES"}
    assert len(secrets) >= 8
    assert all(len(v) >= 24 for v in secrets.values())
    assert not {"admin", "password", "changeme"} & {v.lower() for v in secrets.values()}
    assert stat.S_IMODE(os.stat(out / ".env").st_mode) == 0o600
    compose_text = (out / "compose.yaml").read_text()
    assert not any(value in compose_text for value in secrets.values())
    generate(churn, out, "--profile", "all")
    again = (out / ".env").read_text()
    assert all(f"{k}={v}" in again for k, v in secrets.items())


def test_the_airflow_dags_carry_paths_inside_the_containers(churn: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    generate(churn, out, "--profile", "orchestration")
    dag = (out / "airflow" / "dags").glob("*.py")
    text = "".join(path.read_text() for path in dag)
    assert "/opt/shipyard/bin/shipyard" in text
    assert "--project /app" in text
    assert str(churn) not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "kafka"], "unknown profile 'kafka'"),
        (["--replicas", "0"], "replicas"),
        (["--api-port", "3000"], "ports.grafana and ports.api are both 3000"),
    ],
)
def test_bad_input_names_the_setting_and_writes_nothing(
    churn: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "deploy"
    result = CliRunner().invoke(app, ["compose", "--out", str(out), "--project", str(churn), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_folder_it_did_not_write_is_refused(churn: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "compose.yaml").write_text("services: {}\n")
    settings = Settings.load(churn, environ={})
    with pytest.raises(ConflictError, match="not written by 'shipyard compose'"):
        write_compose(settings, load_deploy(settings), out)
    assert (out / "compose.yaml").read_text() == "services: {}\n"


def test_the_folder_says_what_runs_where_and_how_to_deploy_first(
    churn: Path, tmp_path: Path
) -> None:
    out = tmp_path / "deploy"
    generate(churn, out, "--profile", "bi")
    readme = (out / "README.md").read_text()
    assert "| superset | bi | http://localhost:8088 |" in readme
    assert "grafana" not in readme  # not a chosen profile
    assert "exec scheduler shipyard run train" in readme
    assert "models tag churn:1 business_value=approved" in readme
    assert "models promote churn:1 --to production" in readme
