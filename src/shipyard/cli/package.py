"""``shipyard build`` and ``shipyard compose``: hand the project to IT.

``shipyard build`` makes one image that runs every role (serve, scheduler, predict,
monitor); ``shipyard compose`` writes the architecture around it as one Compose file with
profiles. Both read ``[deploy]`` in shipyard.toml; flags win.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from shipyard.cli.context import ProjectOption, open_project
from shipyard.render import console

# ``packaging.settings.PROFILE_NAMES``, written out: importing it would load pydantic for
# every ``shipyard --help`` (tests/cli/test_startup.py checks the two agree).
PROFILES_HELP = (
    "Profiles to write (repeatable; core, monitoring, bi, dev, orchestration, all; "
    "default: \\[deploy] profiles)."
)


def build_command(
    ctx: typer.Context,
    tag: Annotated[
        str | None, typer.Option(help="Image tag (default: [deploy] tag or shipyard-NAME:latest).")
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(help="Base image with Python 3.11 (default: [deploy] base_image)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the build context into DIR and stop (no docker build)."),
    ] = None,
    docker: Annotated[str, typer.Option(help="The docker command.")] = "docker",
    project: ProjectOption = None,
) -> None:
    """Build the project's container image (multi-stage, non-root, healthcheck, pinned lock)."""
    from shipyard.packaging.image import docker_build, write_context
    from shipyard.packaging.settings import load_deploy

    opened = open_project(ctx, project)
    deploy = load_deploy(opened.settings, tag=tag, base_image=base_image)
    if out is not None:
        context = write_context(opened.settings, deploy, out)
        console.print(f"wrote the build context of {escape(context.tag)} to {context.folder}")
        console.print(f"build it with: docker build --tag {escape(context.tag)} {context.folder}")
        return
    staging = opened.settings.state_dir / "build" / "context"
    context = write_context(opened.settings, deploy, staging)
    try:
        docker_build(context, docker=docker)
    finally:
        shutil.rmtree(context.folder, ignore_errors=True)
    console.print(f"built {escape(context.tag)}: docker run -p 8000:8000 {escape(context.tag)}")


def compose_command(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the Compose files (default: PROJECT/deploy).")
    ] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(help=PROFILES_HELP),
    ] = None,
    replicas: Annotated[
        int | None, typer.Option(help="api replicas (default: [deploy] replicas).")
    ] = None,
    api_port: Annotated[
        int | None, typer.Option(help="Host port of the api entry point (default 8000).")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="The shipyard image's tag.")] = None,
    local_images: Annotated[
        bool,
        typer.Option(
            help="Also write compose.local.yaml: images built here on --base-image instead "
            "of pulled ones (PostgreSQL, Prometheus, nginx, an S3 server)."
        ),
    ] = False,
    base_image: Annotated[
        str | None, typer.Option(help="Base image of the local images (with --local-images).")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Write the architecture as one Compose file: api replicas, scheduler, stores, dashboards."""
    from shipyard.packaging.compose import write_compose
    from shipyard.packaging.settings import load_deploy

    opened = open_project(ctx, project)
    deploy = load_deploy(
        opened.settings,
        profiles=profile or None,
        replicas=replicas,
        port_api=api_port,
        tag=tag,
        base_image=base_image,
    )
    folder = (out or opened.root / "deploy").absolute()
    written = write_compose(opened.settings, deploy, folder, local_images=local_images)
    console.print(f"wrote {len(written)} files to {folder}")
    files = "-f compose.yaml -f compose.local.yaml " if local_images else ""
    console.print(
        f"start it with: cd {folder} && docker compose {files}up -d   "
        f"(profiles: {', '.join(deploy.profiles)}; the api on http://localhost:{deploy.ports.api})",
        soft_wrap=True,
    )
