"""``shipyard ui``: the web console and the read APIs of a project, with no model served."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.context import open_project
from shipyard.render import console


def ui_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    auth: Annotated[
        bool | None,
        typer.Option(
            "--auth/--no-auth",
            help="Require a read token to read the pages (default: [serving] auth, off). "
            "Decisions always need an admin token.",
            show_default=False,
        ),
    ] = None,
    project_dir: Annotated[
        Path | None,
        typer.Option("--project", "-p", help="Project folder (default: found from here up)."),
    ] = None,
) -> None:
    """Serve the web console (/ui) and the read APIs, without serving a model."""
    import uvicorn

    from shipyard.cli.serve import StartupGuard, bind_port, configure_logging, startup_error
    from shipyard.core.exceptions import ShipyardError
    from shipyard.serving import create_app, resolve_serve_settings

    project = open_project(ctx, project_dir)
    settings = resolve_serve_settings(
        project.settings, prediction_log=False, auth=auth, console=True, poll_seconds=0
    )
    listener = bind_port(host, port)
    configure_logging(access_log=False)
    console.print(f"console: http://{host}:{port}/ui/ (project {project.root})")
    if settings.auth:
        console.print(
            "auth: on; log in with a token from: shipyard tokens create NAME --scope read"
        )
    guarded = StartupGuard(create_app(project.registry, [], settings, console_only=True))
    server = uvicorn.Server(
        uvicorn.Config(guarded, host=host, port=port, access_log=False, log_level="info")
    )
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
    if isinstance(guarded.error, ShipyardError):
        raise guarded.error
    if guarded.error is not None:
        raise startup_error(guarded.error) from guarded.error
