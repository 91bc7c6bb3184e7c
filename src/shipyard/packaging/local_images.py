"""Images built here instead of pulled: ``shipyard compose --local-images``.

Where no image registry is reachable (CI, air-gapped hosts) the pulled images of the
architecture are swapped for images built on a Debian base (``[deploy] base_image``, e.g. a
``debootstrap`` bookworm imported with ``docker import``), from Debian packages or PyPI:

=============  =========================================  =====================================
service        pulled image                               built here from
=============  =========================================  =====================================
postgres       ``postgres:16.6-bookworm``                 Debian's ``postgresql-15``
superset-db    (the same postgres image)                  (the same local image)
objectstore    ``minio/minio``                            moto's S3 server (PyPI ``moto[s3]``)
proxy          ``nginx:1.27.3-alpine``                    Debian's ``nginx``
prometheus     ``prom/prometheus``                        Debian's ``prometheus``
=============  =========================================  =====================================

:func:`local_image_files` writes their build contexts under ``local-images/<service>/``;
:func:`local_override` is the Compose override (``compose.local.yaml``) that points each
service at its context, with a healthcheck that works in that image (``python3`` is in every
base, curl and wget are not). The postgres image keeps the official image's contract:
``POSTGRES_USER`` / ``POSTGRES_PASSWORD`` / ``POSTGRES_DB`` on first start, data in
``/var/lib/postgresql/data``, password (SCRAM) logins from the network, ``pg_isready`` on PATH.
Moto keeps buckets in memory and accepts any credentials.

The objectstore installs moto from ``local-images/objectstore/wheelhouse/`` when that folder
has wheels (``local_image_files(..., wheelhouse=True)`` downloads them on the host, where pip
is configured; the build then needs no package index), and from the index otherwise. The
other images install Debian packages, so their builds need the Debian mirror.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.packaging.settings import DeploySettings

#: The directory (relative to the compose output) holding one build context per service.
LOCAL_IMAGES_DIR = "local-images"
#: The repository part of every local image's name.
IMAGE_PREFIX = "shipyard-local"
#: What the objectstore image installs: moto's S3 backend and its server (moto's own
#: ``server`` extra would pull every AWS service's dependencies, sympy included).
OBJECTSTORE_REQUIREMENTS = ("moto[s3]==5.2.5", "flask==3.1.3", "flask-cors==6.0.5")

#: Debian's archive keeps only a suite's current version of a package, so the suite (and the
#: package name, e.g. postgresql-15) is the pin; exact versions would break at each point release.
_APT_PIN = "# hadolint ignore=DL3008\n"
_APT = (
    "apt-get update \\\n"
    " && apt-get install -y --no-install-recommends {packages} \\\n"
    " && rm -rf /var/lib/apt/lists/*"
)

_POSTGRES_DOCKERFILE = """\
# PostgreSQL 15 from Debian, with the official postgres image's contract (see entrypoint.sh).
FROM {base_image}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian would create and start a cluster at install; the entrypoint makes the one we want.
{pin}RUN mkdir -p /etc/postgresql-common/createcluster.d \\
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main.conf \\
 && {apt}
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \\
    PGDATA=/var/lib/postgresql/data
RUN install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data \\
 && install -d -o postgres -g postgres -m 2775 /run/postgresql
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=5s --retries=30 CMD ["pg_isready", "-h", "127.0.0.1", "-q"]
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
"""

_POSTGRES_ENTRYPOINT = """\
#!/bin/bash
# First start: create the cluster in $PGDATA with POSTGRES_USER (default postgres) and
# POSTGRES_PASSWORD, create POSTGRES_DB (default: the user's name), run
# /docker-entrypoint-initdb.d/*.sql|*.sh, then start PostgreSQL listening on every address
# with SCRAM password logins from the network (like the official postgres image).
set -euo pipefail

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "error: POSTGRES_PASSWORD is not set; give the superuser a password" >&2
        exit 1
    fi
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    pwfile="$(mktemp)"
    printf '%s\\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --encoding=UTF8 \\
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    # A server on the Unix socket only, so nothing connects before initialisation ends.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    if [ "$db" != postgres ]; then
        psql -v ON_ERROR_STOP=1 --username="$user" --dbname=postgres \\
            --set=db="$db" <<< 'CREATE DATABASE :"db";'
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sql) psql -v ON_ERROR_STOP=1 --username="$user" --dbname="$db" -f "$script" ;;
            *.sh)
                # shellcheck source=/dev/null
                . "$script" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec "$@"
"""

_PROMETHEUS_DOCKERFILE = """\
# Prometheus from Debian; the configuration is mounted at /etc/prometheus.
FROM {base_image}
{pin}RUN {apt} \\
 && install -d -o prometheus -g prometheus /prometheus
USER prometheus
WORKDIR /prometheus
EXPOSE 9090
HEALTHCHECK --interval=5s --timeout=5s --retries=30 CMD ["python3", "-c", {ready}]
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
"""

_OBJECTSTORE_DOCKERFILE = """\
# An S3-compatible server from PyPI: moto's (buckets in memory, any credentials accepted).
FROM {base_image}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY wheelhouse/ /tmp/wheelhouse/
# From the host-built wheelhouse when it has wheels (no index needed), else from the index.
RUN python3 -m venv /opt/moto \\
 && if compgen -G "/tmp/wheelhouse/*.whl" > /dev/null; then set -- --no-index; fi \\
 && /opt/moto/bin/pip install --no-cache-dir --find-links /tmp/wheelhouse "$@" \\
    {requirements} \\
 && rm -rf /tmp/wheelhouse \\
 && useradd --system --uid 10002 --home-dir /nonexistent --shell /usr/sbin/nologin moto
USER 10002
EXPOSE 9000
HEALTHCHECK --interval=5s --timeout=5s --retries=30 CMD ["python3", "-c", {ready}]
ENTRYPOINT ["/opt/moto/bin/moto_server"]
CMD ["-H", "0.0.0.0", "-p", "9000"]
"""

_PROXY_DOCKERFILE = """\
# nginx from Debian; the configuration is mounted at /etc/nginx/nginx.conf.
FROM {base_image}
# The `nginx` user is the one the official image's configuration names (`user nginx;`).
{pin}RUN {apt} \\
 && useradd --system --no-create-home --shell /usr/sbin/nologin nginx \\
 && ln -sf /dev/stdout /var/log/nginx/access.log \\
 && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 8080
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --timeout=5s --retries=30 CMD ["python3", "-c", {answers}]
CMD ["nginx", "-g", "daemon off;"]
"""

_WHEELHOUSE_README = """\
Wheels of moto's S3 server for the objectstore image, built on the host by
shipyard.packaging.local_images.build_objectstore_wheelhouse(); when this directory has
wheels the image is built from them alone, else pip reaches the package index.
"""


def _http_ok(url: str) -> str:
    """A ``python3 -c`` program that exits 0 when ``url`` answers 2xx/3xx."""
    return f"import urllib.request; urllib.request.urlopen('{url}', timeout=4)"


def _http_answers(url: str) -> str:
    """A ``python3 -c`` program that exits 0 when ``url`` answers at all (any HTTP status)."""
    return (
        "import urllib.request, urllib.error\n"
        f"try: urllib.request.urlopen('{url}', timeout=4)\n"
        "except urllib.error.HTTPError: pass"
    )


def _json_string(text: str) -> str:
    """``text`` as a JSON string (the exec form of a Dockerfile instruction is JSON)."""
    return json.dumps(text)


#: The healthcheck programs, shared by the Dockerfiles and the Compose override.
_PROMETHEUS_READY = _http_ok("http://127.0.0.1:9090/-/ready")
_OBJECTSTORE_READY = _http_ok("http://127.0.0.1:9000/")
_PROXY_ANSWERS = _http_answers("http://127.0.0.1:8080/")


def local_image_files(
    base_image: str, *, wheelhouse: bool = False, python_version: str = "3.11"
) -> dict[str, str | bytes]:
    """The build contexts of the local images: relative path -> file text.

    Paths are ``local-images/<image>/...`` for the images ``postgres``, ``prometheus``,
    ``objectstore`` and ``proxy``; every ``FROM`` is ``base_image`` (a Debian bookworm with
    ``python3``). With ``wheelhouse``, ``local-images/objectstore/wheelhouse/`` gets the wheels
    of the objectstore (:func:`objectstore_wheels`: downloaded here, for CPython
    ``python_version``), so its image builds without reaching a package index; without it,
    the folder holds only a README and the image build installs from the index.
    """
    if not base_image.strip():
        raise ValueError("base_image is empty; give the image the local images build FROM")
    root = LOCAL_IMAGES_DIR
    files: dict[str, str | bytes] = {
        f"{root}/postgres/Dockerfile": _POSTGRES_DOCKERFILE.format(
            base_image=base_image, pin=_APT_PIN, apt=_APT.format(packages="postgresql-15")
        ),
        f"{root}/postgres/entrypoint.sh": _POSTGRES_ENTRYPOINT,
        f"{root}/prometheus/Dockerfile": _PROMETHEUS_DOCKERFILE.format(
            base_image=base_image,
            pin=_APT_PIN,
            apt=_APT.format(packages="prometheus"),
            ready=_json_string(_PROMETHEUS_READY),
        ),
        f"{root}/objectstore/Dockerfile": _OBJECTSTORE_DOCKERFILE.format(
            base_image=base_image,
            requirements=" ".join(f'"{r}"' for r in OBJECTSTORE_REQUIREMENTS),
            ready=_json_string(_OBJECTSTORE_READY),
        ),
        f"{root}/objectstore/wheelhouse/README.txt": _WHEELHOUSE_README,
        f"{root}/proxy/Dockerfile": _PROXY_DOCKERFILE.format(
            base_image=base_image,
            pin=_APT_PIN,
            apt=_APT.format(packages="nginx"),
            answers=_json_string(_PROXY_ANSWERS),
        ),
    }
    if wheelhouse:
        files |= objectstore_wheels(python_version)
    return files


def image_tags(files: Mapping[str, str | bytes]) -> dict[str, str]:
    """Image name -> ``shipyard-local/<image>:<digest of its build context>``.

    The tag changes whenever a text file of the context (a Dockerfile names the base image)
    does, so Compose builds again instead of reusing a stale image. Wheels do not count:
    the Dockerfile pins what they install.
    """
    contents: dict[str, bytes] = {}
    for path in sorted(files):
        parts = path.split("/")
        text = files[path]
        if len(parts) >= 3 and parts[0] == LOCAL_IMAGES_DIR and isinstance(text, str):
            entry = path.encode() + b"\0" + text.encode() + b"\0"
            contents[parts[1]] = contents.get(parts[1], b"") + entry
    return {
        name: f"{IMAGE_PREFIX}/{name}:{hashlib.sha256(content).hexdigest()[:12]}"
        for name, content in contents.items()
    }


def _healthcheck(test: list[str]) -> dict[str, Any]:
    return {"test": test, "interval": "5s", "timeout": "5s", "retries": 30, "start_period": "10s"}


def _postgres_service(tag: str, user: str) -> dict[str, Any]:
    return {
        "image": tag,
        "build": {"context": f"{LOCAL_IMAGES_DIR}/postgres"},
        "pull_policy": "build",
        "healthcheck": _healthcheck(
            ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", user, "-d", user]
        ),
    }


def local_override(deploy: DeploySettings) -> dict[str, Any]:
    """The Compose override that builds the local images instead of pulling.

    One entry per service of ``deploy``'s profiles that has a local image: ``postgres``,
    ``objectstore``, ``proxy`` (core), ``prometheus`` (monitoring), ``superset-db`` (bi).
    Each sets ``image`` (:func:`image_tags`), ``build`` (its context under
    ``local-images/``), a ``healthcheck`` that works in that image and, where the official
    image's arguments do not apply, ``entrypoint`` / ``command``.
    """
    tags = image_tags(local_image_files(deploy.base_image))
    services: dict[str, Any] = {
        "postgres": _postgres_service(tags["postgres"], "shipyard"),
        "objectstore": {
            "image": tags["objectstore"],
            "build": {"context": f"{LOCAL_IMAGES_DIR}/objectstore"},
            "pull_policy": "build",
            # minio's `server /data --console-address :9001` means nothing to moto.
            "entrypoint": ["/opt/moto/bin/moto_server"],
            "command": ["-H", "0.0.0.0", "-p", "9000"],  # noqa: S104 - inside the container: the service must listen on its network
            "healthcheck": _healthcheck(["CMD", "python3", "-c", _OBJECTSTORE_READY]),
        },
        "proxy": {
            "image": tags["proxy"],
            "build": {"context": f"{LOCAL_IMAGES_DIR}/proxy"},
            "pull_policy": "build",
            "healthcheck": _healthcheck(["CMD", "python3", "-c", _PROXY_ANSWERS]),
        },
    }
    if "monitoring" in deploy.profiles:
        services["prometheus"] = {
            "image": tags["prometheus"],
            "build": {"context": f"{LOCAL_IMAGES_DIR}/prometheus"},
            "pull_policy": "build",
            "healthcheck": _healthcheck(["CMD", "python3", "-c", _PROMETHEUS_READY]),
        }
    if "bi" in deploy.profiles:
        services["superset-db"] = _postgres_service(tags["postgres"], "superset")
    return {"services": services}


def build_objectstore_wheelhouse(directory: Path, *, python_version: str = "3.11") -> list[Path]:
    """Download the wheels of :data:`OBJECTSTORE_REQUIREMENTS` into ``directory``; the wheels.

    ``directory`` is ``<out>/local-images/objectstore/wheelhouse``. The wheels are for
    CPython ``python_version`` on this machine's architecture (the base image's Python:
    bookworm's is 3.11), binary only, so the image build needs no compiler and no index.
    Raises :class:`RuntimeError` with pip's output when a wheel cannot be had.
    """
    machine = platform.machine()
    platforms = [
        f"manylinux2014_{machine}",
        f"manylinux_2_28_{machine}",
        f"manylinux_2_34_{machine}",
    ]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
        "--python-version", python_version, "--implementation", "cp",
        *(arg for tag in platforms for arg in ("--platform", tag)),
        "--dest", str(directory), *OBJECTSTORE_REQUIREMENTS,
    ]  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - a fixed argument list, no shell
    if done.returncode != 0:
        raise RuntimeError(
            f"could not download the wheels of {' '.join(OBJECTSTORE_REQUIREMENTS)} for CPython "
            f"{python_version} into {directory} (pip exited {done.returncode}): "
            f"{done.stderr.strip()[-2000:]}; check that the package index is reachable"
        )
    return sorted(directory.glob("*.whl"))


def objectstore_wheels(python_version: str = "3.11") -> dict[str, bytes]:
    """The objectstore's wheelhouse as files: ``local-images/objectstore/wheelhouse/<wheel>``.

    Downloaded by :func:`build_objectstore_wheelhouse` (pip's cache makes repeats quick).
    """
    with tempfile.TemporaryDirectory(prefix="shipyard-wheels-") as scratch:
        wheels = build_objectstore_wheelhouse(Path(scratch), python_version=python_version)
        return {
            f"{LOCAL_IMAGES_DIR}/objectstore/wheelhouse/{wheel.name}": wheel.read_bytes()
            for wheel in wheels
        }
