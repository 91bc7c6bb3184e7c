"""``shipyard compose``: the architecture of the packaging stage as one Compose file.

Profiles (``[deploy] profiles``; ``all`` is every one, and every service also carries it):

- ``core``: ``postgres`` (metadata), ``objectstore`` (S3-compatible artifacts and dataset
  zones) with its bucket made by ``buckets``, ``api-1`` … ``api-N`` behind ``proxy``, and
  ``scheduler``;
- ``monitoring``: ``prometheus`` (a scrape target per replica, alert rules) and ``grafana``
  (datasources and dashboards provisioned from files);
- ``bi``: ``superset`` with its own ``superset-db`` and a ``superset-init`` job;
- ``dev``: ``jupyter`` (JupyterLab in the shipyard image, the project mounted);
- ``orchestration``: ``airflow`` with the project's DAGs, as paths inside the containers.

Secrets are generated once into ``.env`` (kept across regenerations, so a database volume's
password never changes under it); ``COMPOSE_PROFILES`` there makes ``docker compose up``
start the configured profiles. Everything is written to a sibling temporary folder first
and swapped into place, so a failure leaves the previous folder untouched.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from shipyard.core.exceptions import ConflictError
from shipyard.core.settings import Settings
from shipyard.packaging.grafana import grafana_files
from shipyard.packaging.image import CONTAINER_PORT, READY_PROBE, serve_command
from shipyard.packaging.local_images import local_image_files, local_override
from shipyard.packaging.prometheus import prometheus_files, replica_names
from shipyard.packaging.services import (
    SECRETS,
    airflow_files,
    airflow_service,
    grafana_service,
    jupyter_service,
    objectstore_services,
    postgres_service,
    prometheus_service,
    proxy_files,
    proxy_service,
    shipyard_environment,
)
from shipyard.packaging.settings import DeploySettings
from shipyard.packaging.superset import superset_files, superset_services
from shipyard.pipelines.resolve import pipeline_names

#: A file in every generated folder, so a later run may replace it and nothing else.
MARKER = ".shipyard-compose"
COMPOSE_FILE = "compose.yaml"
LOCAL_FILE = "compose.local.yaml"


class _Dumper(yaml.SafeDumper):
    """YAML without anchors (repeated blocks are written out) and with block style."""

    def ignore_aliases(self, _data: Any) -> bool:
        return True


def dump(document: dict[str, Any]) -> str:
    """YAML text of a Compose or config document, as a person would write it."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def project_slug(settings: Settings) -> str:
    """The Compose project name: the project's name in lowercase letters, digits and ``-``."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", settings.project.name.lower()).strip("-_")
    return slug or "shipyard"


def _profiles(*names: str) -> list[str]:
    return [*names, "all"]


def shipyard_services(
    settings: Settings, deploy: DeploySettings, project_path: str
) -> dict[str, dict[str, Any]]:
    """The services that run the shipyard image: buckets, the api replicas, the scheduler."""
    image = deploy.image_tag(settings.project.name)
    environment = shipyard_environment(deploy)
    ready = {
        "postgres": {"condition": "service_healthy"},
        "buckets": {"condition": "service_completed_successfully"},
    }
    make_bucket = (
        "import s3fs; fs = s3fs.S3FileSystem(); bucket = " + repr(deploy.bucket) + "\n"
        "fs.exists(bucket) or fs.mkdir(bucket); print('bucket', bucket, 'ready')"
    )
    services: dict[str, dict[str, Any]] = {
        "buckets": {
            "image": image,
            "profiles": _profiles("core"),
            "entrypoint": ["python", "-c"],
            "command": [make_bucket],
            "environment": environment,
            "depends_on": {"objectstore": {"condition": "service_healthy"}},
            "healthcheck": {"disable": True},
            "restart": "no",
        }
    }
    for name in replica_names(deploy):
        services[name] = {
            "image": image,
            "profiles": _profiles("core"),
            "command": serve_command(deploy),
            "environment": environment,
            "expose": [str(CONTAINER_PORT)],
            "depends_on": ready,
            "restart": "unless-stopped",
            "healthcheck": {
                "test": ["CMD", "python", "-c", READY_PROBE],
                "interval": "10s",
                "timeout": "5s",
                "start_period": "60s",
                "retries": 3,
            },
        }
    services["scheduler"] = {
        "image": image,
        "profiles": _profiles("core"),
        "command": ["scheduler"],
        "environment": environment,
        "volumes": [f"{project_path}/data:/app/data:ro"],
        "depends_on": ready,
        "restart": "unless-stopped",
        "healthcheck": {
            # The scheduler has no port: healthy while it reaches its metadata database.
            "test": [
                "CMD",
                "python",
                "-c",
                "import os, sqlalchemy as sa; sa.create_engine("
                "os.environ['SHIPYARD_DATABASE_URL']).connect().close()",
            ],
            "interval": "15s",
            "timeout": "10s",
            "start_period": "30s",
            "retries": 3,
        },
    }
    return services


def compose_document(
    settings: Settings, deploy: DeploySettings, project_path: str
) -> dict[str, Any]:
    """The whole ``compose.yaml`` as a dictionary (compose-spec, ``name:`` first)."""
    services: dict[str, dict[str, Any]] = {
        "postgres": postgres_service(
            "shipyard", "shipyard", "POSTGRES_PASSWORD", "pgdata", _profiles("core")
        ),
        **objectstore_services(deploy, _profiles("core")),
        **shipyard_services(settings, deploy, project_path),
        "proxy": proxy_service(deploy, _profiles("core")),
    }
    volumes: dict[str, dict[str, Any]] = {"pgdata": {}, "objects": {}}
    chosen = set(deploy.profiles)
    if "monitoring" in chosen:
        services["prometheus"] = prometheus_service(deploy, _profiles("monitoring"))
        services["grafana"] = grafana_service(deploy, _profiles("monitoring"))
        volumes |= {"prometheus-data": {}, "grafana-data": {}}
    if "bi" in chosen:
        for name, service in superset_services(deploy).items():
            service["profiles"] = _profiles("bi")
            services[name] = service
        volumes |= {"superset-pgdata": {}}
    if "dev" in chosen:
        services["jupyter"] = jupyter_service(settings, deploy, project_path, _profiles("dev"))
    if "orchestration" in chosen:
        services["airflow"] = airflow_service(settings, deploy, _profiles("orchestration"))
        volumes |= {"airflow-home": {}}
    return {"name": project_slug(settings), "services": services, "volumes": volumes}


def secret_values(existing: dict[str, str]) -> dict[str, str]:
    """Every secret of ``.env``: the existing value, else a new random one (URL-safe)."""
    return {name: existing.get(name) or secrets.token_urlsafe(24) for name in SECRETS}


def env_file(deploy: DeploySettings, values: dict[str, str]) -> str:
    """``.env``: the secrets and ``COMPOSE_PROFILES``."""
    lines = [
        "# Generated by 'shipyard compose'. Secrets were generated on this machine: keep this",
        "# file out of version control (it is mode 0600). Regenerating keeps these values.",
        f"COMPOSE_PROFILES={','.join(deploy.profiles)}",
    ]
    lines += [f"{name}={value}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def read_env(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of an existing ``.env`` (comments and blanks skipped)."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.lstrip().startswith("#"):
            values[name.strip()] = value.strip()
    return values


def compose_files(
    settings: Settings,
    deploy: DeploySettings,
    folder: Path,
    *,
    local_images: bool = False,
) -> dict[str, str | bytes]:
    """Every file of the compose folder, by path relative to it."""
    project_path = os.path.relpath(settings.root, folder)
    name = settings.project.name
    values = secret_values(read_env(folder / ".env"))
    files: dict[str, str | bytes] = {
        COMPOSE_FILE: "# Generated by 'shipyard compose'; regenerate rather than edit.\n"
        + dump(compose_document(settings, deploy, project_path)),
        ".env": env_file(deploy, values),
        **proxy_files(deploy),
    }
    if "monitoring" in deploy.profiles:
        files |= prometheus_files(deploy) | grafana_files(deploy, name)
    if "bi" in deploy.profiles:
        files |= superset_files(deploy, name)
    if "orchestration" in deploy.profiles:
        files |= airflow_files(settings, deploy, values["AIRFLOW_ADMIN_PASSWORD"])
    if local_images:
        files |= local_image_files(deploy.base_image, wheelhouse=True)
        files[LOCAL_FILE] = (
            "# Generated by 'shipyard compose --local-images': images built on this machine.\n"
            + dump(local_override(deploy))
        )
    files["README.md"] = deploy_readme(settings, deploy, local_images=local_images)
    files[MARKER] = f"{COMPOSE_FILE} of project {name}\n"
    return files


#: What each service gives, for the folder's README (profile, host port setting, purpose).
_SERVICES = (
    ("proxy", "core", "api", "the entry point: shipyard's API, /invocations, /v2, /metrics"),
    ("objectstore", "core", "objectstore_console", "S3 console (127.0.0.1 only)"),
    ("prometheus", "monitoring", "prometheus", "metrics and alerts of every api replica"),
    ("grafana", "monitoring", "grafana", "dashboards: Serving, Monitoring, Business, Operations"),
    ("superset", "bi", "superset", "SQL and charts on predictions, jobs, monitoring, value"),
    ("jupyter", "dev", "jupyter", "JupyterLab on the project (token JUPYTER_TOKEN in .env)"),
    ("airflow", "orchestration", "airflow", "the project's pipelines as DAGs"),
)


def deploy_readme(settings: Settings, deploy: DeploySettings, *, local_images: bool) -> str:
    """``README.md`` of the compose folder: what runs where, and the first deployment."""
    files = "-f compose.yaml -f compose.local.yaml " if local_images else ""
    lines = [
        f"# {settings.project.name}: deployment",
        "",
        "Generated by `shipyard compose`; regenerate rather than edit (`.env` is kept).",
        f"Profiles: {', '.join(deploy.profiles)} (`COMPOSE_PROFILES` in `.env`).",
        "",
        "| service | profile | URL | what it gives |",
        "| --- | --- | --- | --- |",
    ]
    ports = deploy.ports.model_dump()
    for service, profile, port, what in _SERVICES:
        if profile in deploy.profiles:
            lines.append(f"| {service} | {profile} | http://localhost:{ports[port]} | {what} |")
    name, _, stage = deploy.models[0].partition("@")
    name, stage = name.split(":")[0], stage or "production"
    registering = [p for p, t in settings.pipelines.items() if t.get("register_as") == name]
    pipelines = registering or pipeline_names(settings)
    pipeline = pipelines[0] if len(pipelines) == 1 else "PIPELINE"
    gate = settings.gates.get(stage)
    tags = {k: ("VALUE" if v == "*" else v) for k, v in (gate.require_tags if gate else {}).items()}
    lines += [
        "",
        f"The api replicas ({deploy.replicas}) serve {', '.join(deploy.models)}; metadata is in",
        f"the `postgres` service, artifacts and datasets in `s3://{deploy.bucket}/artifacts`.",
        "",
        "First deployment: train in production, take the go / no-go, then start the rest:",
        "",
        "```bash",
        f"docker compose {files}up -d --wait postgres objectstore buckets scheduler",
        f"docker compose {files}exec scheduler shipyard run {pipeline}",
        f"docker compose {files}exec scheduler shipyard models list",
        *(
            f"docker compose {files}exec scheduler shipyard models tag {name}:1 {key}={value}"
            for key, value in tags.items()
        ),
        f"docker compose {files}exec scheduler shipyard models promote {name}:1 --to {stage}",
        f"docker compose {files}up -d --wait",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_files(files: Mapping[str, str | bytes], root: Path) -> Path:
    """Write ``files`` (relative path -> text or bytes) below ``root``; scripts executable."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        if relative.endswith(".sh"):
            path.chmod(0o755)
    return root


def write_compose(
    settings: Settings, deploy: DeploySettings, folder: Path, *, local_images: bool = False
) -> list[Path]:
    """Write the compose folder (new, empty, or an earlier one); return the files written."""
    folder = folder.absolute()
    if folder.exists() and (
        not folder.is_dir() or (any(folder.iterdir()) and not (folder / MARKER).exists())
    ):
        raise ConflictError(
            f"{folder} exists and was not written by 'shipyard compose'; give --out a new or "
            "empty folder"
        )
    files = compose_files(settings, deploy, folder, local_images=local_images)
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write_files(files, staging)
        (staging / ".env").chmod(0o600)
        old = folder.with_name(f"{staging.name}.old")
        if folder.exists():
            folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(folder / relative for relative in files)
