"""The image's build context: Dockerfile (hadolint-clean, multi-stage, non-root, healthcheck,
OCI labels), pinned lock with hashes, wheelhouse, .dockerignore, the project without its data."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipyard.cli.app import app
from shipyard.core.exceptions import ConfigError, ConflictError
from shipyard.core.settings import Settings
from shipyard.packaging.image import render_dockerfile, requirements, write_context
from shipyard.packaging.settings import load_deploy
from shipyard.templates import create_project


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = dockerfile.replace("\\\n", " ")
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("image") / "churn"
    create_project(root, "churn")
    (root / ".shipyard").mkdir(exist_ok=True)
    (root / ".shipyard" / "shipyard.db").write_text("state")
    (root / ".env").write_text("SECRET=1\n")
    return root


@pytest.fixture(scope="module")
def context(template: Path) -> Path:
    settings = Settings.load(template, environ={})
    out = template.parent / "context"
    write_context(settings, load_deploy(settings), out)
    return out


def test_the_dockerfile_is_multi_stage_non_root_with_a_healthcheck(context: Path) -> None:
    parsed = instructions((context / "Dockerfile").read_text())
    froms = [args for keyword, args in parsed if keyword == "FROM"]
    assert froms == [
        "python:3.11.7-slim-bookworm AS build",
        "python:3.11.7-slim-bookworm AS runtime",
    ]
    assert ("USER", "10001:10001") in parsed
    health = next(args for keyword, args in parsed if keyword == "HEALTHCHECK")
    assert "/health/ready" in health
    assert "curl" not in health
    assert 'CMD ["python"' in health
    labels = " ".join(args for keyword, args in parsed if keyword == "LABEL")
    for label in ("title", "version", "created", "revision", "base.name"):
        assert f"org.opencontainers.image.{label}=" in labels
    assert 'io.shipyard.models="churn@production"' in labels
    run = next(args for keyword, args in parsed if keyword == "RUN")
    assert "--no-index" in run
    assert "--require-hashes" in run
    assert ("ENTRYPOINT", '["shipyard"]') in parsed
    command = json.loads(next(args for keyword, args in parsed if keyword == "CMD"))
    assert command == ["serve", "churn@production", "--host", "0.0.0.0", "--port", "8000"]


def test_hadolint_finds_nothing(context: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    done = subprocess.run(
        [hadolint, str(context / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_lock_pins_every_wheel_with_its_hash(context: Path) -> None:
    lines = [
        line for line in (context / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    wheels = {w.name: w for w in (context / "wheelhouse").glob("*.whl")}
    assert len(lines) == len(wheels) > 20
    names = {line.split("==")[0] for line in lines}
    assert {"shipyard", "scikit-learn", "fastapi", "s3fs", "psycopg"} <= names
    digests = {hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels.values()}
    assert {line.rsplit("sha256:", 1)[1] for line in lines} == digests


def test_the_project_goes_in_without_its_data_state_or_secrets(context: Path) -> None:
    project = context / "project"
    assert (project / "shipyard.toml").is_file()
    assert (project / "pipelines").is_dir()
    for left_out in ("data", ".shipyard", ".env"):
        assert not (project / left_out).exists(), left_out
    ignore = (context / ".dockerignore").read_text()
    assert "project/data" in ignore
    assert "project/.shipyard" in ignore


def test_a_project_template_overrides_one_block(template: Path, tmp_path: Path) -> None:
    root = tmp_path / "own"
    shutil.copytree(template, root)
    (root / "deploy").mkdir()
    (root / "deploy" / "Dockerfile.j2").write_text(
        '{% extends "shipyard/Dockerfile.j2" %}\n'
        "{% block system_packages %}RUN apt-get update && apt-get install -y --no-install-"
        "recommends libgomp1=12.2.0-14 && rm -rf /var/lib/apt/lists/*{% endblock %}\n"
    )
    settings = Settings.load(root, environ={})
    text = render_dockerfile(settings, load_deploy(settings))
    assert "libgomp1" in text
    assert "HEALTHCHECK" in text
    assert text.count("FROM ") == 2


def test_a_broken_project_template_is_a_clear_error(template: Path, tmp_path: Path) -> None:
    root = tmp_path / "broken"
    shutil.copytree(template, root)
    (root / "deploy").mkdir()
    (root / "deploy" / "Dockerfile.j2").write_text("{% block x %}never closed\n")
    settings = Settings.load(root, environ={})
    with pytest.raises(ConfigError, match=r"Dockerfile.j2 cannot be rendered: .*extend"):
        render_dockerfile(settings, load_deploy(settings))


def test_out_refuses_a_folder_it_did_not_write(template: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    settings = Settings.load(template, environ={})
    with pytest.raises(ConflictError, match="not an earlier 'shipyard build' context"):
        write_context(settings, load_deploy(settings), out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_build_with_no_served_model_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    root.mkdir()
    (root / "shipyard.toml").write_text('[project]\nname = "bare"\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["build", "--out", str(out), "--project", str(root)])
    assert result.exit_code == 1
    assert "no served model" in result.output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bare"]  # no staging folder left behind


def test_the_dev_profile_puts_jupyterlab_in_the_image(tmp_path: Path) -> None:
    root = tmp_path / "dev"
    root.mkdir()
    (root / "shipyard.toml").write_text(
        '[project]\nname = "dev"\n[serving]\nmodels = ["m@production"]\n'
        '[deploy]\nprofiles = ["dev"]\n'
    )
    settings = Settings.load(root, environ={})
    assert requirements(load_deploy(settings)) == ["shipyard[s3]", "jupyterlab"]
