"""The ``bi`` profile: Superset's config, init job and bundle, and a real Superset importing it.

The fast tests check the generated files. The end-to-end test runs the generated ``init.sh``
with Superset's own virtualenv (``.venv-superset``, the release of the image) on a SQLite
metadata database, imports the bundle pointed at a fresh PostgreSQL database holding a
shipyard project, and asks Superset's chart-data API for the predictions dataset.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import secrets
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from sklearn.pipeline import Pipeline
from tests.conftest import PG_ADMIN_URL
from tests.helpers import make_settings

from shipyard import Project
from shipyard.packaging.compose import write_files
from shipyard.packaging.settings import DeploySettings
from shipyard.packaging.superset import (
    DATASETS,
    PASSWORD_MASK,
    SUPERSET_IMAGE,
    superset_files,
    superset_services,
)
from shipyard.serving.base import Prediction
from shipyard.serving.predlog import PredictionLog

REPO = Path(__file__).resolve().parents[2]
SUPERSET_VENV = REPO / ".venv-superset"
Trained = tuple[Pipeline, pd.DataFrame, np.ndarray]


def write(files: dict[str, str | bytes], folder: Path) -> Path:
    """Write generated files below ``folder``; return ``folder / "superset"``."""
    return write_files(files, folder) / "superset"


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    """The ``superset/`` folder ``shipyard compose`` writes, for a project named ``e2e``."""
    return write(superset_files(DeploySettings(), "e2e"), tmp_path / "deploy")


def load_config(path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in ("SUPERSET_SECRET_KEY", "SUPERSET_DB_PASSWORD", "SUPERSET_DATABASE_URI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(path))


# -- the generated files ---------------------------------------------------------------------


def test_config_refuses_to_start_without_a_secret_key(
    generated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = generated / "superset_config.py"
    with pytest.raises(RuntimeError, match="SUPERSET_SECRET_KEY is not set"):
        load_config(config, monkeypatch, SUPERSET_DB_PASSWORD="pw")
    with pytest.raises(RuntimeError, match="too weak"):
        load_config(config, monkeypatch, SUPERSET_SECRET_KEY="short", SUPERSET_DB_PASSWORD="pw")
    with pytest.raises(RuntimeError, match="too weak"):
        load_config(
            config,
            monkeypatch,
            SUPERSET_SECRET_KEY="CHANGE_ME_TO_A_COMPLEX_RANDOM_SECRET",
            SUPERSET_DB_PASSWORD="pw",
        )
    with pytest.raises(RuntimeError, match="SUPERSET_DB_PASSWORD is not set"):
        load_config(config, monkeypatch, SUPERSET_SECRET_KEY=secrets.token_urlsafe(24))


def test_config_reads_every_secret_from_the_environment(
    generated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = secrets.token_urlsafe(24)
    values = load_config(
        generated / "superset_config.py",
        monkeypatch,
        SUPERSET_SECRET_KEY=key,
        SUPERSET_DB_PASSWORD="p@ss/word",
    )
    assert values["SECRET_KEY"] == key
    uri = sa.make_url(values["SQLALCHEMY_DATABASE_URI"])
    assert (uri.drivername, uri.host, uri.database) == (
        "postgresql+psycopg2",
        "superset-db",
        "superset",
    )
    assert (uri.username, uri.password) == ("superset", "p@ss/word")
    overridden = load_config(
        generated / "superset_config.py",
        monkeypatch,
        SUPERSET_SECRET_KEY=key,
        SUPERSET_DATABASE_URI="sqlite:////tmp/superset.db",
    )
    assert overridden["SQLALCHEMY_DATABASE_URI"] == "sqlite:////tmp/superset.db"


def test_bundle_is_a_datasets_export_of_the_views_without_a_password(generated: Path) -> None:
    bundle = generated / "bundle"
    assert yaml.safe_load((bundle / "metadata.yaml").read_text()) == {
        "version": "1.0.0",
        "type": "SqlaTable",
    }
    database = yaml.safe_load((bundle / "databases" / "shipyard.yaml").read_text())
    uri = sa.make_url(database["sqlalchemy_uri"])
    assert (uri.drivername, uri.host, uri.port, uri.database, uri.username) == (
        "postgresql+psycopg2",
        "postgres",
        5432,
        "shipyard",
        "shipyard",
    )
    assert uri.password == PASSWORD_MASK
    assert "password" not in database
    assert database["allow_dml"] is False
    datasets = {
        path.stem: yaml.safe_load(path.read_text())
        for path in sorted((bundle / "datasets" / "shipyard").glob("*.yaml"))
    }
    assert (
        set(datasets)
        == set(DATASETS)
        == {
            "shipyard_predictions",
            "shipyard_batch_jobs",
            "shipyard_monitor_values",
            "shipyard_business_value",
        }
    )
    for view, dataset in datasets.items():
        assert dataset["table_name"] == view
        assert dataset["database_uuid"] == database["uuid"]
        assert dataset["version"] == "1.0.0"
        uuid.UUID(dataset["uuid"])
    assert len({d["uuid"] for d in datasets.values()}) == len(datasets)


def test_bundle_uuids_are_stable_per_project() -> None:
    first = superset_files(DeploySettings(), "alpha")
    assert first == superset_files(DeploySettings(), "alpha")
    other = superset_files(DeploySettings(), "beta")
    path = "superset/bundle/databases/shipyard.yaml"
    assert yaml.safe_load(first[path])["uuid"] != yaml.safe_load(other[path])["uuid"]


def test_import_zip_takes_the_password_from_the_environment(
    generated: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundle.zip"
    tool = [sys.executable, str(generated / "shipyard_bundle.py"), "zip", str(generated / "bundle")]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("POSTGRES_PASSWORD", "SHIPYARD_DATABASE_URI")
    }
    missing = subprocess.run([*tool, str(out)], env=env, capture_output=True, text=True)
    assert missing.returncode != 0
    assert "POSTGRES_PASSWORD is not set" in missing.stderr
    subprocess.run([*tool, str(out)], env=env | {"POSTGRES_PASSWORD": "s3cret"}, check=True)
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        database = yaml.safe_load(archive.read("shipyard_bundle/databases/shipyard.yaml"))
    assert "shipyard_bundle/metadata.yaml" in names
    assert {f"shipyard_bundle/datasets/shipyard/{view}.yaml" for view in DATASETS} <= set(names)
    assert database["password"] == "s3cret"
    assert PASSWORD_MASK in database["sqlalchemy_uri"]


def test_no_secret_is_written_in_any_file(generated: Path) -> None:
    def keys(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield str(key)
                yield from keys(value)
        elif isinstance(node, list):
            for item in node:
                yield from keys(item)

    for path in generated.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        for user, password in re.findall(r"://([^:/\s]+):([^@\s]+)@", text):
            assert password == PASSWORD_MASK, f"{path}: a password for {user} is written"
        if path.suffix == ".yaml":
            written = [k for k in keys(yaml.safe_load(text)) if "password" in k or "secret" in k]
            assert not written, f"{path} has {written}"
    init = (generated / "init.sh").read_text()
    assert re.findall(r"--password (\S+)", init) == ['"$SUPERSET_ADMIN_PASSWORD"'] * 2
    config = (generated / "superset_config.py").read_text()
    assert re.findall(r"^SECRET_KEY = (.*)$", config, re.M) == ["_required("]


def test_services_wait_for_their_dependencies_and_take_secrets_from_env() -> None:
    deploy = DeploySettings.model_validate({"ports": {"superset": 18088}})
    services = superset_services(deploy)
    assert list(services) == ["superset-db", "superset-init", "superset"]
    for name, service in services.items():
        assert service["profiles"] == ["bi"], name
        assert "healthcheck" in service, name
        for key, value in service.get("environment", {}).items():
            if key.endswith(("PASSWORD", "SECRET_KEY")):
                assert re.fullmatch(r"\$\{[A-Z_]+\}", value), (name, key, value)
    db, init, server = services["superset-db"], services["superset-init"], services["superset"]
    assert db["environment"]["POSTGRES_DB"] == "superset"
    assert db["environment"]["POSTGRES_USER"] == "superset"
    assert db["environment"]["POSTGRES_PASSWORD"] == "${SUPERSET_DB_PASSWORD}"
    assert init["depends_on"]["superset-db"] == {"condition": "service_healthy"}
    assert init["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert init["depends_on"]["api-1"] == {"condition": "service_healthy"}
    assert init["command"] == ["/bin/sh", "/app/shipyard/init.sh"]
    assert server["depends_on"]["superset-init"] == {"condition": "service_completed_successfully"}
    assert server["ports"] == ["18088:8088"]
    assert server["image"] == init["image"]
    assert server["build"] == {"context": "./superset"}


def test_dockerfile_extends_the_pinned_image_with_psycopg2(generated: Path) -> None:
    lines = [
        line
        for line in (generated / "Dockerfile").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == f"FROM {SUPERSET_IMAGE}"
    assert any("uv pip install" in line and "psycopg2-binary==" in line for line in lines)
    assert lines[-1] == "USER superset"


def test_hadolint_finds_nothing_in_the_dockerfile(generated: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    done = subprocess.run(
        [hadolint, str(generated / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- a real Superset ----------------------------------------------------------------------------

QUERY_SCRIPT = """
import json, sys
import prison
from superset.app import create_app

password, table = sys.argv[1], sys.argv[2]
client = create_app().test_client()
login = client.post(
    "/api/v1/security/login",
    json={"username": "admin", "password": password, "provider": "db", "refresh": False},
)
assert login.status_code == 200, login.get_data(as_text=True)
headers = {"Authorization": "Bearer " + login.get_json()["access_token"]}
query = prison.dumps({"filters": [{"col": "table_name", "opr": "eq", "value": table}]})
found = client.get("/api/v1/dataset/?q=" + query, headers=headers).get_json()
assert found["count"] == 1, found
dataset_id = found["result"][0]["id"]
dataset = client.get(f"/api/v1/dataset/{dataset_id}", headers=headers).get_json()["result"]
columns = [column["column_name"] for column in dataset["columns"]]
body = {
    "datasource": {"id": dataset_id, "type": "table"},
    "queries": [{"columns": columns, "metrics": [], "row_limit": 100, "orderby": []}],
    "result_type": "full",
    "result_format": "json",
    "form_data": {},
}
answer = client.post("/api/v1/chart/data", json=body, headers=headers)
assert answer.status_code == 200, answer.get_data(as_text=True)
print("RESULT " + json.dumps({"columns": columns, "data": answer.get_json()["result"][0]["data"]}))
"""


def superset_venv() -> Path:
    """``.venv-superset``, or skip (fail in CI, where ``make test`` creates it)."""
    if (SUPERSET_VENV / "bin" / "superset").exists():
        return SUPERSET_VENV
    reason = f"{SUPERSET_VENV} is missing: 'make .venv-superset/bin/python' creates it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def pg_database() -> Iterator[sa.URL]:
    """A fresh PostgreSQL database (the views live in its ``public`` schema, as deployed)."""
    name = f"sy_superset_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({exc.orig}); start it")
    try:
        yield sa.make_url(PG_ADMIN_URL).set(database=name)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.slow
def test_superset_imports_the_bundle_and_answers_on_the_predictions_dataset(
    generated: Path, pg_database: sa.URL, trained: Trained, tmp_path: Path
) -> None:
    venv = superset_venv()
    model, frame, _ = trained
    url = pg_database.render_as_string(hide_password=False)
    with Project(settings=make_settings(tmp_path / "proj", url)) as project:
        project.registry.register("churn", model, input_example=frame.head(5), trust=True)
        log = PredictionLog(project.database)
        answer = Prediction(np.array([1]), np.array([[0.2, 0.8]]), [0, 1])
        columns = {"tenure": np.array([3]), "charges": np.array([42.0])}
        log.record("churn", 1, "req-superset-e2e", 0.004, columns, answer)
        assert log.flush() == 1

    admin_password = secrets.token_urlsafe(16)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SUPERSET_", "PYTHON", "VIRTUAL_ENV", "SHIPYARD_"))
    } | {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "SUPERSET_CONFIG_PATH": str(generated / "superset_config.py"),
        "SUPERSET_HOME": str(tmp_path / "superset-home"),
        "SUPERSET_SECRET_KEY": secrets.token_urlsafe(32),
        "SUPERSET_DATABASE_URI": f"sqlite:///{tmp_path / 'superset.db'}",
        "SUPERSET_ADMIN_PASSWORD": admin_password,
        "SHIPYARD_DATABASE_URI": pg_database.set(drivername="postgresql+psycopg2").render_as_string(
            hide_password=False
        ),
    }
    init = subprocess.run(
        ["sh", str(generated / "init.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert init.returncode == 0, init.stdout[-4000:] + init.stderr[-8000:]
    assert "dataset shipyard_predictions: " in init.stdout

    query = subprocess.run(
        [str(venv / "bin" / "python"), "-c", QUERY_SCRIPT, admin_password, "shipyard_predictions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert query.returncode == 0, query.stdout[-4000:] + query.stderr[-8000:]
    line = next(x for x in query.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert {"request_id", "model", "version"} <= set(result["columns"])
    rows = [row for row in result["data"] if row["request_id"] == "req-superset-e2e"]
    assert len(rows) == 1, result
    assert (rows[0]["model"], rows[0]["version"]) == ("churn", 1)
