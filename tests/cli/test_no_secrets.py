"""No secret in any log line, error body or stored record of a full run (issue 14).

A template project on PostgreSQL through a URL with a password: ``shipyard run`` trains and
registers, ``shipyard serve --auth`` answers with a token, a wrong token, a revoked one; then
every byte the commands printed, every answer and every text stored in the database is
searched for the password and the tokens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.serving.test_grpc import free_port

from shipyard.templates import create_project

PASSWORD = "pw-Do-Not-Leak-4711"
URL = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/test"


def shipyard(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "shipyard"), *args]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)


@pytest.mark.xdist_group("postgres-schema")
def test_no_password_or_token_leaks(tmp_path: Path) -> None:
    root = tmp_path / "secret-project"
    create_project(root, "secret-project")
    schema = f"leak_{os.getpid()}"
    admin = sa.create_engine(URL.replace(PASSWORD, ""))
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = f"{URL}?options=-csearch_path%3D{schema}"
    env = {**os.environ, "SHIPYARD_DATABASE_URL": url, "SHIPYARD_USER": "tester"}
    env.pop("SHIPYARD_ARTIFACTS", None)
    printed: list[str] = []
    try:
        run = shipyard(root, env, "run")
        printed += [run.stdout, run.stderr]
        assert run.returncode == 0, run.stderr
        made = shipyard(root, env, "tokens", "create", "app", "--scope", "predict")
        assert made.returncode == 0, made.stderr
        token = next(w for w in made.stdout.split() if w.startswith("shp_"))
        gone = shipyard(root, env, "tokens", "create", "old", "--scope", "read")
        old = next(w for w in gone.stdout.split() if w.startswith("shp_"))
        assert shipyard(root, env, "tokens", "revoke", "old").returncode == 0
        printed += [shipyard(root, env, "tokens", "list").stdout]
        port = free_port()
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "shipyard"), "serve", "churn", "--auth",
             "--port", str(port)],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        answers: list[str] = []
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180  # a guard against a hung start
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    if httpx.get(f"{base}/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            row = {"customer_id": 1, "tenure_months": 3}
            for header in (token, old, token + "x", f"Basic {PASSWORD}"):
                auth = {"authorization": header if " " in header else f"Bearer {header}"}
                for method, path, body in (
                    ("POST", "/v1/models/churn/predict", [row]),
                    ("GET", "/v1/models", None),
                    ("GET", "/v1/predictions/jobs", None),
                ):
                    answer = httpx.request(method, base + path, json=body, headers=auth)
                    answers.append(answer.text + str(answer.headers))
        finally:
            server.terminate()
            out, err = server.communicate(timeout=60)
            printed += [out, err]
        with sa.create_engine(url).connect() as connection:
            stored = [
                str(value)
                for table in sa.inspect(connection).get_table_names(schema=schema)
                for record in connection.execute(sa.text(f'SELECT * FROM {schema}."{table}"'))
                for value in record
            ]
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    for secret in (PASSWORD, token, old):
        assert not [text for text in printed if secret in text], f"{secret[:6]}… printed"
        assert not [text for text in answers if secret in text], f"{secret[:6]}… answered"
        assert not [text for text in stored if secret in text], f"{secret[:6]}… stored"
    assert any("churn" in text for text in stored)  # the search did see the records
